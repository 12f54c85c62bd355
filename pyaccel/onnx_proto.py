"""A pure-Python reader of ONNX files (the protobuf wire format) for
pyaccel.onnx when the ``onnx`` package is not installed: ModelProto with the
fields the importer reads (opsets, graph, nodes, attributes, initializers,
inputs and outputs with their types and shapes). Messages are plain objects
with protobuf's field names and ``HasField``; ``to_numpy`` converts a
TensorProto (raw_data or the typed fields; external data is refused).
Numbers per onnx.proto3 (onnx 1.12 .. 1.23: the fields read here never
changed)."""
from __future__ import annotations

import struct
from typing import Any

import numpy as np

# data_type -> numpy (TensorProto.DataType)
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
          7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
          13: np.uint64}
ATTR_TENSOR, ATTR_GRAPH = 4, 5


class Message:
    FIELDS: dict = {}       # number -> (name, kind, repeated); kind: a scalar kind or a class

    def __init__(self) -> None:
        self._set: set = set()
        for name, kind, rep in self.FIELDS.values():
            if rep:
                setattr(self, name, [])
            elif not isinstance(kind, type):
                setattr(self, name, {"str": "", "bytes": b"", "float": 0.0,
                                     "double": 0.0}.get(kind, 0))

    def __getattr__(self, name: str) -> Any:       # an unset sub-message: empty
        for fname, kind, rep in type(self).FIELDS.values():
            if fname == name and isinstance(kind, type):
                return kind()
        raise AttributeError(name)

    def HasField(self, name: str) -> bool:  # noqa: N802 - protobuf's name
        return name in self._set


def _varint(b: bytes, i: int) -> tuple:
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, i
        shift += 7


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(kind: str, wire: int, b: bytes, i: int) -> tuple:
    if wire == 0:
        v, i = _varint(b, i)
        return (_signed(v) if kind == "int" else v), i
    if wire == 5:
        return struct.unpack_from("<f", b, i)[0], i + 4
    if wire == 1:
        return struct.unpack_from("<d", b, i)[0], i + 8
    raise ValueError(f"wire type {wire} for a {kind}")


def parse(cls: type, b: bytes) -> Message:
    msg = cls()
    i, end = 0, len(b)
    while i < end:
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        spec = cls.FIELDS.get(num)
        if wire == 2:
            n, i = _varint(b, i)
            chunk, i = b[i:i + n], i + n
        elif wire == 0:
            v, i = _varint(b, i)
            chunk = None
        elif wire == 1:
            chunk, i = b[i:i + 8], i + 8
        elif wire == 5:
            chunk, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if spec is None:
            continue
        name, kind, rep = spec
        msg._set.add(name)
        if isinstance(kind, type):
            value: Any = parse(kind, chunk)
        elif kind == "str":
            value = chunk.decode("utf-8")
        elif kind == "bytes":
            value = bytes(chunk)
        elif wire == 2:                         # packed repeated numbers
            vals, j = [], 0
            while j < len(chunk):
                if kind in ("int", "uint"):
                    v, j = _varint(chunk, j)
                    vals.append(_signed(v) if kind == "int" else v)
                else:
                    v, j = _scalar(kind, 5 if kind == "float" else 1, chunk, j)
                    vals.append(v)
            getattr(msg, name).extend(vals)
            continue
        elif wire == 0:
            value = _signed(v) if kind == "int" else v
        else:
            value = struct.unpack("<f" if wire == 5 else "<d", chunk)[0]
        if rep:
            getattr(msg, name).append(value)
        else:
            setattr(msg, name, value)
    return msg


class Dimension(Message):
    FIELDS = {1: ("dim_value", "int", False), 2: ("dim_param", "str", False)}


class TensorShape(Message):
    FIELDS = {1: ("dim", Dimension, True)}


class TensorType(Message):
    FIELDS = {1: ("elem_type", "int", False), 2: ("shape", TensorShape, False)}


class Opaque(Message):
    FIELDS: dict = {}


class TypeProto(Message):
    FIELDS = {1: ("tensor_type", TensorType, False), 4: ("sequence_type", Opaque, False),
              5: ("map_type", Opaque, False), 8: ("sparse_tensor_type", Opaque, False),
              9: ("optional_type", Opaque, False)}


class ValueInfo(Message):
    FIELDS = {1: ("name", "str", False), 2: ("type", TypeProto, False)}


class StringStringEntry(Message):
    FIELDS = {1: ("key", "str", False), 2: ("value", "str", False)}


class Tensor(Message):
    FIELDS = {1: ("dims", "int", True), 2: ("data_type", "int", False),
              4: ("float_data", "float", True), 5: ("int32_data", "int", True),
              6: ("string_data", "bytes", True), 7: ("int64_data", "int", True),
              8: ("name", "str", False), 9: ("raw_data", "bytes", False),
              10: ("double_data", "double", True), 11: ("uint64_data", "uint", True),
              13: ("external_data", StringStringEntry, True),
              14: ("data_location", "int", False)}


class Attribute(Message):
    FIELDS: dict = {}


class Node(Message):
    FIELDS = {1: ("input", "str", True), 2: ("output", "str", True), 3: ("name", "str", False),
              4: ("op_type", "str", False), 5: ("attribute", Attribute, True),
              7: ("domain", "str", False)}


class Graph(Message):
    FIELDS = {1: ("node", Node, True), 2: ("name", "str", False),
              5: ("initializer", Tensor, True), 11: ("input", ValueInfo, True),
              12: ("output", ValueInfo, True), 13: ("value_info", ValueInfo, True)}


Attribute.FIELDS = {1: ("name", "str", False), 2: ("f", "float", False), 3: ("i", "int", False),
                    4: ("s", "bytes", False), 5: ("t", Tensor, False), 6: ("g", Graph, False),
                    7: ("floats", "float", True), 8: ("ints", "int", True),
                    9: ("strings", "bytes", True), 10: ("tensors", Tensor, True),
                    20: ("type", "int", False), 21: ("ref_attr_name", "str", False)}


class OpsetId(Message):
    FIELDS = {1: ("domain", "str", False), 2: ("version", "int", False)}


class Model(Message):
    FIELDS = {1: ("ir_version", "int", False), 2: ("producer_name", "str", False),
              7: ("graph", Graph, False), 8: ("opset_import", OpsetId, True)}


def load_model(data: bytes) -> Model:
    return parse(Model, data)


def to_numpy(t: Tensor) -> np.ndarray:
    if t.data_location == 1 or t.external_data:
        raise ValueError(f"tensor {t.name!r} keeps its data in an external file: not "
                         "supported without the onnx package")
    if t.data_type not in DTYPES:
        raise ValueError(f"tensor {t.name!r}: data type {t.data_type} is not supported")
    dt = np.dtype(DTYPES[t.data_type])
    shape = tuple(t.dims)
    if t.HasField("raw_data"):
        return np.frombuffer(t.raw_data, dt.newbyteorder("<")).astype(dt).reshape(shape)
    if dt == np.float32:
        vals = np.asarray(t.float_data, np.float32)
    elif dt == np.float64:
        vals = np.asarray(t.double_data, np.float64)
    elif dt == np.int64:
        vals = np.asarray(t.int64_data, np.int64)
    elif dt in (np.uint32, np.uint64):
        vals = np.asarray(t.uint64_data, dt)
    elif dt == np.float16:
        vals = np.asarray(t.int32_data, np.uint16).view(np.float16)
    else:
        vals = np.asarray(t.int32_data).astype(dt)
    return vals.reshape(shape)


def attribute_value(a: Attribute) -> Any:
    """The value of an AttributeProto as onnx.helper.get_attribute_value gives it
    (a tensor attribute as its numpy array)."""
    if a.type == 1:
        return a.f
    if a.type == 2:
        return a.i
    if a.type == 3:
        return a.s.decode("utf-8")
    if a.type == ATTR_TENSOR:
        return to_numpy(a.t)
    if a.type == 6:
        return list(a.floats)
    if a.type == 7:
        return list(a.ints)
    if a.type == 8:
        return [s.decode("utf-8") for s in a.strings]
    if a.type == 9:
        return [to_numpy(t) for t in a.tensors]
    if a.type == ATTR_GRAPH:
        return a.g
    raise ValueError(f"attribute {a.name!r}: type {a.type} is not supported")
