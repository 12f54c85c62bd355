"""ONNX models as the compiler's IR: ``pyaccel.onnx.load(path) -> Graph``.

Reads what ``torch.onnx.export`` writes (opsets 13-17; older and newer opsets
of the same operators too) with the ``onnx`` package (the host's onnx 1.23,
the guest's Debian python3-onnx 1.12). The result is a
:class:`pyaccel.compiler.ir.Graph`; the compiler's passes fold batch norms,
fuse activations and turn concat/split/slice/shuffle into views.

Operators (``SUPPORTED``): Conv (2-D; auto_pad), BatchNormalization
(inference; the passes fold it into the conv before it, or make it a
scale_shift: after a Concat, at the start of a pre-activation block),
Relu, Clip (ReLU, ReLU6, any other range), LeakyRelu, Sigmoid, HardSigmoid,
HardSwish (and ``x * HardSigmoid(x)``, how opsets below 14 spell it), Add and
Mul (same shapes; a per-channel (N, C, 1, 1) multiplier; a constant operand
broadcast per channel or as a scalar becomes a scale_shift; a bias after a
MatMul joins the fc), Concat, Split and Slice on channels, the
Reshape/Transpose/Reshape of a channel shuffle, MaxPool, AveragePool
(count_include_pad either way, ceil_mode), GlobalAveragePool,
GlobalMaxPool, ReduceMean over H and W, Flatten, Gemm and MatMul as fully
connected layers (constant weights), Softmax, Identity and Dropout
(inference). int8 models in QDQ form (``QDQ``: QuantizeLinear/DequantizeLinear
pairs around those operators, as onnxruntime's quantize_static writes them)
load through :func:`load_model` as a QuantizedModel. Constant subgraphs (the
Shape/Gather/Unsqueeze/Concat chains torch.onnx.export writes around Flatten
and Reshape, Constant, Cast, arithmetic on constants) are folded while
loading (``FOLDABLE``).

Anything else raises :class:`OnnxImportError` naming the node, its op type
and the reason; nothing is skipped silently. Tensors of another rank than 4
(N, C, H, W) or 2 (N, F) are reshaped to 4-D around elementwise ops and
activations and back, so ``Relu`` of a (3, 4, 5) tensor loads too.

Without the ``onnx`` package, :func:`load` reads the file with
:mod:`pyaccel.onnx_proto` (a pure-Python protobuf reader of the fields the
importer uses; ``PYACCEL_ONNX_PROTO=1`` forces it); only external tensor
data and ModelProto objects need the package.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import numpy as np

from .compiler.ir import Graph, IRError, Quant

SUPPORTED = ("Conv", "BatchNormalization", "Relu", "Clip", "LeakyRelu", "Sigmoid",
             "HardSigmoid", "HardSwish", "Add", "Mul", "Concat", "Split", "Slice", "Reshape",
             "Transpose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
             "ReduceMean", "Flatten", "Gemm", "MatMul", "Softmax", "Identity", "Dropout")
# int8 models: QuantizeLinear/DequantizeLinear pairs around the operators above
# (onnxruntime's QDQ format; see load_model), not as standalone operators
QDQ = ("QuantizeLinear", "DequantizeLinear")
FOLDABLE = ("Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Add",
            "Sub", "Mul", "Div", "Slice", "Reshape", "Identity", "ConstantOfShape", "Range",
            "Floor", "Ceil", "Sqrt", "Neg", "Transpose", "Equal", "Where", "Expand", "Size",
            "Min", "Max", "Flatten", "Relu", "CastLike")


class OnnxImportError(IRError):
    """An ONNX node pyaccel cannot load: the message names the node, its op
    type and why (``node``, ``op_type`` and ``reason`` as attributes)."""

    def __init__(self, node: str, op_type: str, reason: str) -> None:
        super().__init__(f"ONNX node {node!r} ({op_type}): {reason}")
        self.node, self.op_type, self.reason = node, op_type, reason


def _onnx():
    """The onnx package, or None (then pyaccel.onnx_proto reads the files)."""
    if os.environ.get("PYACCEL_ONNX_PROTO") == "1":         # force the built-in reader
        return None
    try:
        import onnx
        from onnx import numpy_helper  # noqa: F401
    except ImportError:
        return None
    return onnx


def load(model: Any, constants: Optional[Mapping[str, np.ndarray]] = None,
         batch: Optional[int] = None, name: Optional[str] = None) -> Graph:
    """An ONNX model (a path, bytes or a ModelProto) as a compiler Graph.

    constants: graph inputs to bind as constants (e.g. a node test's weights
    that arrive as inputs); batch: the size of a symbolic first dimension
    (default 1; other symbolic dimensions are an error). Without the onnx
    package, files and bytes are read by pyaccel.onnx_proto.
    """
    onnx = _onnx()
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        name = name or os.path.splitext(os.path.basename(path))[0]
        try:
            with open(path, "rb") as f:
                model = f.read()
        except OSError as e:
            raise OnnxImportError("-", "file", f"cannot read {path}: {e}") from None
    if isinstance(model, (bytes, bytearray)):
        if onnx is not None:
            model = onnx.load_from_string(bytes(model))
        else:
            from . import onnx_proto
            try:
                model = onnx_proto.load_model(bytes(model))
            except (ValueError, IndexError, UnicodeDecodeError, struct_error()) as e:
                raise OnnxImportError("-", "file", f"not a readable ONNX model: {e}") from None
    elif onnx is None and not _is_proto(model):
        raise OnnxImportError("-", "-", "a ModelProto object needs the onnx package: "
                              "pip install onnx, or Debian's python3-onnx")
    return Importer(model, onnx, constants or {}, batch or 1).run(name)


def load_model(model: Any, constants: Optional[Mapping[str, np.ndarray]] = None,
               batch: Optional[int] = None, name: Optional[str] = None) -> Any:
    """An ONNX model as a compiler model: a builder.GraphModel, or, for a QDQ
    model (QuantizeLinear/DequantizeLinear pairs as onnxruntime's
    quantize_static writes them), a pyaccel.quantize.QuantizedModel whose int8
    layers use the file's scales and zero points (``from_qdq``)."""
    g = load(model, constants, batch, name)
    if is_qdq(g):
        from .quantize import from_qdq

        return from_qdq(g)
    from .compiler.builder import GraphModel

    return GraphModel(g)


def is_qdq(graph: Graph) -> bool:
    """True if a loaded graph came from a QDQ model (its tensors carry scales)."""
    return any(i.quant is not None for t, i in graph.tensors.items() if t not in graph.constants)


def struct_error():
    import struct
    return struct.error


def _is_proto(obj: Any) -> bool:
    from . import onnx_proto
    return isinstance(obj, onnx_proto.Message)


def to_numpy(tensor: Any) -> np.ndarray:
    if _is_proto(tensor):
        from . import onnx_proto
        return onnx_proto.to_numpy(tensor)
    from onnx import numpy_helper
    return numpy_helper.to_array(tensor)


def np_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX TensorProto data type (onnx 1.12 and 1.13+)."""
    onnx = _onnx()
    if onnx is None:
        from .onnx_proto import DTYPES
        if elem_type not in DTYPES:
            raise ValueError(f"ONNX data type {elem_type} is not supported")
        return np.dtype(DTYPES[elem_type])
    f = getattr(onnx.helper, "tensor_dtype_to_np_dtype", None)
    if f is not None:
        return np.dtype(f(elem_type))
    return np.dtype(onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[elem_type])


def _attrs(onnx: Any, node: Any) -> dict:
    out = {}
    for a in node.attribute:
        if _is_proto(a):
            from .onnx_proto import attribute_value
            out[a.name] = attribute_value(a)
            continue
        import onnx as onnx_pkg
        v = onnx_pkg.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif a.type == onnx_pkg.AttributeProto.TENSOR:
            v = to_numpy(v)
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


class _Shuffle:
    """A channel shuffle in flight: Reshape to (N, g, C/g, H, W) (stage 1),
    then Transpose (0, 2, 1, 3, 4) (stage 2); the Reshape back ends it."""

    def __init__(self, src: str, groups: int, shape: tuple, stage: int) -> None:
        self.src, self.groups, self.shape, self.stage = src, groups, shape, stage


class Importer:
    def __init__(self, model: Any, onnx: Any, constants: Mapping, batch: int) -> None:
        self.model, self.onnx, self.bind, self.batch = model, onnx, constants, batch
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          1)
        self.consts: dict[str, np.ndarray] = {}     # ONNX name -> array (folded)
        self.dq: dict[str, Quant] = {}              # ONNX constant -> its DequantizeLinear's
        self.values: dict[str, Any] = {}            # ONNX name -> IR tensor name or _Shuffle
        self.g: Graph = Graph()
        self.node_name = ""
        self.op_type = ""

    # --- helpers ------------------------------------------------------------------

    def fail(self, reason: str):
        raise OnnxImportError(self.node_name, self.op_type, reason)

    def shape(self, t: str) -> tuple:
        """The ONNX shape of IR tensor t (a stand-in's original shape)."""
        return self.g.onnx_shapes.get(t, self.g.shape(t))

    def standin(self, t: str, shape: tuple) -> str:
        """Record that IR tensor t stands for an ONNX tensor of shape."""
        if tuple(shape) != tuple(self.g.shape(t)):
            self.g.onnx_shapes[t] = tuple(shape)
        return t

    def ir_axis(self, t: str, axis: int) -> int:
        """The IR axis of ONNX axis (normalized) of tensor t."""
        s = self.shape(t)
        axis = axis + len(s) if axis < 0 else axis
        if t not in self.g.onnx_shapes:
            return axis
        r = len(s)
        if r == 1:
            return 1
        if r < 4:
            return axis + 4 - r
        return axis - (r - 4) if axis >= r - 3 else -1

    def tensor(self, name: str, what: str = "input") -> str:
        """The IR tensor of an ONNX value that must be computed at run time."""
        v = self.values.get(name)
        if isinstance(v, _Shuffle):
            self.fail(f"reads the 5-D tensor {name!r} of a Reshape/Transpose: only the "
                      "channel shuffle pattern Reshape (N, g, C/g, H, W) -> Transpose "
                      "(0, 2, 1, 3, 4) -> Reshape (N, C, H, W) is supported")
        if v is None:
            if name in self.consts:
                return self.constant(name)
            self.fail(f"{what} {name!r} is not defined")
        return v

    def constant(self, name: str, array: Optional[np.ndarray] = None) -> str:
        """An IR constant of ONNX constant `name` (or of `array` derived from
        it); a QDQ model's dequantized weight keeps its Quant as the marker
        that the quantizer made it int8."""
        a = self.consts[name] if array is None else array
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(np.float32)
        t = self.g.unique_name(f"const:{name}")
        self.g.add_constant(t, a, self.dq.get(name))
        return t

    def const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            self.fail(f"its {what} ({name!r}) must be a constant (an initializer or "
                      "foldable), it is computed at run time")
        return self.consts[name]

    def opt_const(self, inputs: list, i: int, what: str) -> Optional[np.ndarray]:
        if len(inputs) > i and inputs[i]:
            return self.const(inputs[i], what)
        return None

    def add(self, op: str, inputs: list, outputs: Optional[list] = None, **attrs) -> Any:
        name = self.g.unique_name(self.node_name or op)
        try:
            return self.g.add_node(op, inputs, outputs, name=name, **attrs)
        except IRError as e:
            self.fail(str(e))

    def out_name(self, onnx_name: str) -> str:
        return self.g.unique_name(onnx_name)

    def float_tensor(self, t: str) -> None:
        dt = self.g.tensors[t].dtype
        if dt != "f32":
            self.fail(f"input {t!r} is {dt}: operators compute float32 tensors (int8 "
                      "models arrive as QuantizeLinear/DequantizeLinear pairs)")

    def reshaped(self, t: str, shape: tuple, onnx_out: str) -> str:
        """IR tensor t (any ONNX shape) as ONNX shape `shape`: a reshape to the
        shape or, for a rank other than 2 and 4, to its 4-D stand-in."""
        s4 = standin_shape(shape)
        if s4 == self.g.shape(t):
            return self.standin(t, shape) if t not in self.g.onnx_shapes or \
                self.g.onnx_shapes[t] == tuple(shape) else self.standin(
                    self.add("reshape", [t], [self.out_name(onnx_out)], shape=s4).outputs[0],
                    shape)
        y = self.add("reshape", [t], [self.out_name(onnx_out)], shape=s4).outputs[0]
        return self.standin(y, shape)

    def unary(self, node: Any, op: str, **attrs) -> None:
        x = self.tensor(node.input[0])
        self.float_tensor(x)
        y = self.add(op, [x], [self.out_name(node.output[0])], **attrs).outputs[0]
        self.values[node.output[0]] = self.standin(y, self.shape(x))

    # --- the model --------------------------------------------------------------------

    def run(self, name: Optional[str]) -> Graph:
        gp = self.model.graph
        self.g = Graph(name or gp.name or "onnx")
        self.g.onnx_shapes = {}
        for init in gp.initializer:
            self.consts[init.name] = to_numpy(init)
        for k, v in self.bind.items():
            self.consts[k] = np.asarray(v)
        for vi in gp.input:
            if vi.name in self.consts:
                continue
            self.node_name, self.op_type = vi.name, "graph input"
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                self.fail("is not a tensor (sequences, maps, optionals are not supported)")
            np_dt = np_dtype(tt.elem_type)
            if np.dtype(np_dt) != np.float32:
                self.fail(f"is {np.dtype(np_dt).name}: the device computes float32 "
                          "(give it as a constant if it is a parameter)")
            dims = []
            for i, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value == 0:
                    self.fail(f"dimension {i} is 0: an empty tensor")
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(d.dim_value)
                elif i == 0:
                    dims.append(self.batch)
                else:
                    self.fail(f"dimension {i} is symbolic ({d.dim_param or '?'}): give a "
                              "model with a fixed input shape")
            if not dims:
                self.fail("is a scalar: inputs must be tensors")
            self.values[vi.name] = self.standin(self.g.add_input(vi.name,
                                                                 standin_shape(dims)), dims)
        for i, node in enumerate(gp.node):
            self.node_name = node.name or f"{node.op_type}_{i}"
            self.op_type = node.op_type
            if node.domain not in ("", "ai.onnx"):
                self.fail(f"operator domain {node.domain!r} is not supported")
            if self.fold(node):
                continue
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                self.fail("operator not supported (pyaccel.onnx.SUPPORTED and QDQ list those that "
                          "are)")
            handler(node, _attrs(self.onnx, node))
        self.node_name, self.op_type = "-", "graph output"
        for vo in gp.output:
            if vo.name in self.consts and vo.name not in self.values:
                self.fail(f"output {vo.name!r} is a constant: nothing to compute")
            t = self.tensor(vo.name, "output")
            if t in self.g.inputs or t in self.g.outputs:
                t = self.standin(self.add("copy", [t], [self.out_name(vo.name + ":out")]
                                          ).outputs[0], self.shape(t))
            self.g.mark_output(t)
        fuse_hard_swish(self.g)
        try:
            self.g.check()
        except IRError as e:
            raise OnnxImportError("-", "graph", str(e)) from None
        return self.g

    # --- constant folding --------------------------------------------------------------

    def fold(self, node: Any) -> bool:
        """Compute node now if its inputs are all known constants (Shape: a
        static shape); True if done."""
        op = node.op_type
        ins = list(node.input)
        if op == "DequantizeLinear" and ins[0] in self.consts and ins[0] not in self.values:
            self.consts[node.output[0]] = self.dequantize(node)
            return True
        if op not in FOLDABLE:
            return False
        if op == "Shape":
            src = self.values.get(ins[0])
            if src is None or isinstance(src, _Shuffle):
                if ins[0] not in self.consts:
                    return False
                shape = np.asarray(self.consts[ins[0]]).shape
            else:
                shape = self.shape(src)
            a = _attrs(self.onnx, node)
            shape = shape[a.get("start", 0):a["end"]] if "end" in a else \
                shape[a.get("start", 0):]
            self.consts[node.output[0]] = np.asarray(shape, np.int64)
            return True
        if op == "Size":
            src = self.values.get(ins[0])
            if src is None or isinstance(src, _Shuffle):
                return False
            self.consts[node.output[0]] = np.asarray(int(np.prod(self.shape(src))), np.int64)
            return True
        if op == "CastLike" and ins[0] in self.consts and ins[1] in self.values:
            self.consts[node.output[0]] = np.asarray(self.consts[ins[0]], np.float32)
            return True
        if not all(t == "" or t in self.consts for t in ins):
            return False
        args = [self.consts[t] if t else None for t in ins]
        a = _attrs(self.onnx, node)
        try:
            outs = _fold(op, args, a, self.opset)
        except (ValueError, IndexError, TypeError) as e:
            self.fail(f"cannot fold this constant subgraph: {e}")
        for t, v in zip(node.output, outs):
            self.consts[t] = np.asarray(v)
        return True

    # --- operators ------------------------------------------------------------------------

    # --- QDQ: QuantizeLinear / DequantizeLinear (onnxruntime's quantize_static) --------

    def qparams(self, node, a) -> tuple:
        """(scale, zero point, zero point's dtype, axis) of a Q or DQ node."""
        s = np.asarray(self.const(node.input[1], "scale"), np.float64)
        zp = self.opt_const(list(node.input), 2, "zero point")
        zp = np.zeros((), np.uint8) if zp is None else np.asarray(zp)
        return s, zp, zp.dtype, int(a.get("axis", 1))

    def dequantize(self, node) -> np.ndarray:
        """A DequantizeLinear of a constant (a QDQ model's weights, biases):
        folded to float32; the weight remembers its scales (constant())."""
        s, zp, _, axis = self.qparams(node, _attrs(self.onnx, node))
        q = np.asarray(self.consts[node.input[0]])
        if q.dtype.kind not in "iu":
            self.fail(f"dequantizes a {q.dtype} constant: int8, uint8 or int32 expected")
        shape = [1] * q.ndim
        if s.ndim == 1 and q.ndim:
            shape[axis % q.ndim] = s.size
        sv, zv = s.reshape(shape), zp.astype(np.float64).reshape(shape if zp.ndim else [])
        w = ((q.astype(np.float64) - zv) * sv).astype(np.float32)
        if q.dtype == np.int8:
            self.dq[node.output[0]] = Quant(s if s.ndim else float(s), 0 if not zp.ndim
                                            else int(zp.ravel()[0]))
        return w

    def activation_quant(self, node, a) -> Quant:
        s, zp, zdt, _ = self.qparams(node, a)
        if zdt != np.int8:
            self.fail(f"{zdt} activations: the device's int8 is signed (quantize with "
                      "activation_type=QuantType.QInt8)")
        if s.size != 1 or zp.size != 1:
            self.fail("per-axis activation quantization: activations take one scale and "
                      "zero point per tensor")
        return Quant(float(np.float32(s.ravel()[0])), int(zp.ravel()[0]))

    def op_QuantizeLinear(self, node, a):
        """A QDQ pair's Q: the tensor stays float32 in the IR and carries the
        (scale, zero point) that pyaccel.quantize.from_qdq gives its int8 form.
        A second, different Q of one tensor becomes a requantizing copy."""
        v = self.values.get(node.input[0])
        if isinstance(v, _Shuffle):                  # inside a channel shuffle: its scale
            self.values[node.output[0]] = v          # is its source's (a view)
            return
        x = self.tensor(node.input[0])
        self.float_tensor(x)
        q = self.activation_quant(node, a)
        old = self.g.tensors[x].quant
        if old is not None and (old.scale, old.zero_point) != (q.scale, q.zero_point):
            x = self.standin(self.add("copy", [x], [self.out_name(node.output[0])]
                                      ).outputs[0], self.shape(x))
        self.g.tensors[x].quant = q
        self.values[node.output[0]] = x

    def op_DequantizeLinear(self, node, a):
        v = self.values.get(node.input[0])
        if v is None:
            self.fail(f"dequantizes {node.input[0]!r}, which no QuantizeLinear wrote (int8 "
                      "graph inputs are not supported: the graph input is float32)")
        if not isinstance(v, _Shuffle):
            q, want = self.g.tensors[v].quant, self.activation_quant(node, a)
            if q is None or (q.scale, q.zero_point) != (want.scale, want.zero_point):
                self.fail(f"its scale and zero point ({want.scale:g}, {want.zero_point}) "
                          f"differ from the QuantizeLinear's that wrote {node.input[0]!r}")
        self.values[node.output[0]] = v

    def op_Identity(self, node, a):
        self.values[node.output[0]] = self.tensor(node.input[0])

    def op_Dropout(self, node, a):
        if len(node.input) > 2 and node.input[2]:
            train = self.const(node.input[2], "training_mode")
            if bool(np.asarray(train).item()):
                self.fail("training_mode is true: only inference is supported")
        if len(node.output) > 1 and node.output[1]:
            self.fail("its mask output is used: only inference (no mask) is supported")
        self.values[node.output[0]] = self.tensor(node.input[0])

    def op_Relu(self, node, a):
        self.unary(node, "act", kind="relu")

    def op_Sigmoid(self, node, a):
        self.unary(node, "act", kind="sigmoid")

    def op_LeakyRelu(self, node, a):
        self.unary(node, "act", kind="leaky_relu", alpha=float(a.get("alpha", 0.01)))

    def op_HardSigmoid(self, node, a):
        self.unary(node, "act", kind="hard_sigmoid", alpha=float(a.get("alpha", 0.2)),
                   beta=float(a.get("beta", 0.5)))

    def op_HardSwish(self, node, a):
        self.unary(node, "act", kind="hard_swish", alpha=1 / 6, beta=0.5)

    def op_Clip(self, node, a):
        if self.opset < 11:
            lo, hi = a.get("min"), a.get("max")
        else:
            lo = self.opt_const(list(node.input), 1, "min")
            hi = self.opt_const(list(node.input), 2, "max")
        lo = None if lo is None else float(np.asarray(lo).reshape(-1)[0])
        hi = None if hi is None else float(np.asarray(hi).reshape(-1)[0])
        if lo is not None and np.isinf(lo) and lo < 0:
            lo = None
        if hi is not None and np.isinf(hi) and hi > 0:
            hi = None
        if lo is not None and hi is not None and lo > hi:
            lo = hi                     # ONNX: min > max sets every value to max
        if lo == 0.0 and hi is None:
            self.unary(node, "act", kind="relu")
        elif lo == 0.0 and hi == 6.0:
            self.unary(node, "act", kind="relu6")
        else:
            self.unary(node, "act", kind="clip", min=lo, max=hi)

    def op_Softmax(self, node, a):
        x = self.tensor(node.input[0])
        s = self.shape(x)
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1))
        axis = axis + len(s) if axis < 0 else axis
        if not 0 <= axis < len(s):
            self.fail(f"axis {a.get('axis')} is outside the input's rank {len(s)}")
        if self.opset < 13 and axis != len(s) - 1 and \
                int(np.prod(s[axis + 1:])) != 1:
            # opset < 13: softmax over the input coerced to 2-D at axis
            flat = self.add("reshape", [x], [self.out_name(f"{node.output[0]}:2d")],
                            shape=(int(np.prod(s[:axis])), int(np.prod(s[axis:])))).outputs[0]
            y = self.add("softmax", [flat], [self.out_name(f"{node.output[0]}:sm")],
                         axis=1).outputs[0]
            self.values[node.output[0]] = self.reshaped(y, tuple(s), node.output[0])
            return
        ax = self.ir_axis(x, axis)
        if ax < 0:
            self.fail(f"axis {axis} of a {s} tensor: softmax over one of the leading axes of a "
                      "tensor of rank above 4 is not supported")
        y = self.add("softmax", [x], [self.out_name(node.output[0])], axis=ax).outputs[0]
        self.values[node.output[0]] = self.standin(y, s)

    def op_Conv(self, node, a):
        x = self.tensor(node.input[0])
        self.float_tensor(x)
        w = self.const(node.input[1], "weight")
        b = self.opt_const(list(node.input), 2, "bias")
        if len(self.shape(x)) != 4 or w.ndim != 4:
            self.fail(f"a {len(self.shape(x)) - 2}-D convolution (input {self.shape(x)}): "
                      "only 2-D (N, C, H, W) convolutions are supported")
        kernel = tuple(int(v) for v in a.get("kernel_shape", w.shape[2:]))
        if kernel != tuple(w.shape[2:]):
            self.fail(f"kernel_shape {kernel} differs from the weight's {w.shape[2:]}")
        stride = tuple(a.get("strides", (1, 1)))
        dil = tuple(a.get("dilations", (1, 1)))
        pads = self.pads(a, self.shape(x)[2:], kernel, stride, dil)
        ins = [x, self.constant(node.input[1])]
        if b is not None:
            ins.append(self.constant(node.input[2]))
        self.values[node.output[0]] = self.add(
            "conv", ins, [self.out_name(node.output[0])], stride=stride, dilation=dil,
            pads=pads, groups=int(a.get("group", 1))).outputs[0]

    def pads(self, a: dict, hw: tuple, kernel: tuple, stride: tuple, dil: tuple,
             ceil: bool = False) -> tuple:
        """(top, bottom, left, right) from ONNX's pads / auto_pad."""
        auto = a.get("auto_pad", "NOTSET") or "NOTSET"
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out = []
            for size, k, s, d in zip(hw, kernel, stride, dil):
                total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
                small, big = total // 2, total - total // 2
                out.append((small, big) if auto == "SAME_UPPER" else (big, small))
            t, b, l, r = out[0][0], out[0][1], out[1][0], out[1][1]
        elif auto == "VALID":
            t = b = l = r = 0
        elif auto == "NOTSET":
            p = tuple(int(v) for v in a.get("pads", (0, 0, 0, 0)))
            if len(p) != 4:
                self.fail(f"pads {p}: only 2-D windows are supported")
            t, l, b, r = p
        else:
            self.fail(f"auto_pad {auto!r} is not an ONNX value")
        if ceil:
            # ceil_mode: extra padding at the end so that the last partial window counts
            # (ONNX: a window must start inside the input or the left padding)
            pb = []
            for size, k, s, d, p0, p1 in zip(hw, kernel, stride, dil, (t, l), (b, r)):
                span = (k - 1) * d + 1
                floor_out = (size + p0 + p1 - span) // s + 1
                ceil_out = -(-(size + p0 + p1 - span) // s) + 1
                if (ceil_out - 1) * s >= size + p0:
                    ceil_out -= 1
                pb.append(p1 + (ceil_out - floor_out) * s)
            b, r = pb
        return (t, b, l, r)

    def pool(self, node, a, op: str) -> None:
        x = self.tensor(node.input[0])
        self.float_tensor(x)
        if len(self.shape(x)) != 4:
            self.fail(f"a {len(self.shape(x)) - 2}-D pooling (input {self.shape(x)}): only "
                      "2-D (N, C, H, W) pooling is supported")
        if len(node.output) > 1 and node.output[1]:
            self.fail("its Indices output is used: not supported")
        kernel = tuple(int(v) for v in a["kernel_shape"])
        stride = tuple(int(v) for v in a.get("strides", (1, 1)))
        dil = tuple(int(v) for v in a.get("dilations", (1, 1)))
        if dil != (1, 1):
            self.fail(f"dilations {dil}: pooling with dilation is not supported")
        if a.get("storage_order", 0):
            self.fail("storage_order 1 (column major indices) is not supported")
        ceil = bool(a.get("ceil_mode", 0))
        pads = self.pads(a, self.shape(x)[2:], kernel, stride, dil, ceil)
        attrs = dict(kernel=kernel, stride=stride, pads=pads)
        if op == "avgpool":
            include = bool(a.get("count_include_pad", 0))
            if ceil and include and pads != self.pads(a, self.shape(x)[2:], kernel, stride,
                                                      dil):
                self.fail("ceil_mode with count_include_pad: the extra windows would "
                          "count padding ONNX does not count")
            attrs["count_include_pad"] = include or not any(pads)
        self.values[node.output[0]] = self.add(op, [x], [self.out_name(node.output[0])],
                                               **attrs).outputs[0]

    def op_MaxPool(self, node, a):
        self.pool(node, a, "maxpool")

    def op_AveragePool(self, node, a):
        self.pool(node, a, "avgpool")

    def global_pool(self, node, op: str) -> None:
        x = self.tensor(node.input[0])
        self.float_tensor(x)
        if len(self.shape(x)) != 4:
            self.fail(f"input {self.shape(x)}: only (N, C, H, W) global pooling is supported")
        self.values[node.output[0]] = self.add(op, [x], [self.out_name(node.output[0])]
                                               ).outputs[0]

    def op_GlobalAveragePool(self, node, a):
        self.global_pool(node, "global_avgpool")

    def op_GlobalMaxPool(self, node, a):
        self.global_pool(node, "global_maxpool")

    def op_ReduceMean(self, node, a):
        x = self.tensor(node.input[0])
        s = self.shape(x)
        if self.opset >= 18:
            axes = self.opt_const(list(node.input), 1, "axes")
            if axes is None and a.get("noop_with_empty_axes", 0):
                self.values[node.output[0]] = x
                return
        else:
            axes = a.get("axes")
        axes = list(range(len(s))) if axes is None else \
            sorted(int(v) + len(s) if int(v) < 0 else int(v) for v in np.asarray(axes).ravel())
        if len(s) != 4 or axes != [2, 3]:
            self.fail(f"reduces axes {axes} of a {s} tensor: only the mean over H and W "
                      "(axes 2, 3) of (N, C, H, W) is supported")
        y = self.add("global_avgpool", [x], [self.out_name(node.output[0] + ":gap")
                     if not a.get("keepdims", 1) else self.out_name(node.output[0])]
                     ).outputs[0]
        if not a.get("keepdims", 1):
            y = self.add("flatten", [y], [self.out_name(node.output[0])]).outputs[0]
        self.values[node.output[0]] = y

    def op_Flatten(self, node, a):
        x = self.tensor(node.input[0])
        s = self.shape(x)
        axis = int(a.get("axis", 1))
        axis = axis + len(s) if axis < 0 else axis
        if axis == 1 and x not in self.g.onnx_shapes:
            y = self.add("flatten", [x], [self.out_name(node.output[0])]).outputs[0]
        else:
            y = self.add("reshape", [x], [self.out_name(node.output[0])],
                         shape=(int(np.prod(s[:axis])), int(np.prod(s[axis:])))).outputs[0]
        self.values[node.output[0]] = y

    def fc(self, node, x: str, weight: np.ndarray, bias: Optional[np.ndarray]) -> None:
        s = self.shape(x)
        if len(s) != 2 and not (len(s) == 4 and s[2:] == (1, 1)):
            self.fail(f"input {s}: a fully connected layer takes (N, F) (flatten first)")
        if node.input[1] in self.dq:                  # keep the QDQ marker (see constant)
            self.dq[node.output[0] + ".weight"] = self.dq[node.input[1]]
        ins = [x, self.constant(node.output[0] + ".weight", weight.astype(np.float32))]
        if bias is not None:
            ins.append(self.constant(node.output[0] + ".bias", bias.astype(np.float32)))
        self.values[node.output[0]] = self.add("fc", ins, [self.out_name(node.output[0])]
                                               ).outputs[0]

    def op_Gemm(self, node, a):
        x = self.tensor(node.input[0])
        self.float_tensor(x)
        if a.get("transA", 0):
            self.fail("transA=1: the activation must be (N, F)")
        b = np.asarray(self.const(node.input[1], "B (weight)"), np.float64)
        w = b if a.get("transB", 0) else b.T
        w = w * float(a.get("alpha", 1.0))
        c = self.opt_const(list(node.input), 2, "C (bias)")
        bias = None
        if c is not None:
            c = np.asarray(c, np.float64) * float(a.get("beta", 1.0))
            n = self.shape(x)[0]
            try:
                full = np.broadcast_to(c, (n, w.shape[0]))
            except ValueError:
                self.fail(f"C of shape {c.shape} does not broadcast to ({n}, {w.shape[0]})")
            if not (full == full[:1]).all():
                self.fail(f"C of shape {c.shape} differs per row: a bias is per output")
            bias = full[0]
        self.fc(node, x, w, bias)

    def op_MatMul(self, node, a):
        x = self.tensor(node.input[0])
        self.float_tensor(x)
        if node.input[1] in self.values:
            self.fail("both operands are computed at run time: only x @ constant "
                      "(a fully connected layer) is supported")
        b = np.asarray(self.const(node.input[1], "second operand"), np.float64)
        if b.ndim != 2 or len(self.shape(x)) != 2:
            self.fail(f"{self.shape(x)} @ {b.shape}: only (N, F) @ (F, C) is supported")
        self.fc(node, x, b.T, None)

    def binary(self, node, op: str) -> None:
        n0, n1 = node.input[0], node.input[1]
        c0, c1 = n0 in self.consts and n0 not in self.values, \
            n1 in self.consts and n1 not in self.values
        if c0 and c1:
            self.fail("both operands are constant but were not folded")
        if c0:
            n0, n1 = n1, n0
            c1 = True
        x = self.tensor(n0)
        self.float_tensor(x)
        s = self.shape(x)
        out = node.output[0]
        if c1:
            c = np.asarray(self.consts[n1], np.float64)
            p = self.g.producer(x)
            if op == "add" and p is not None and p.op == "fc" and len(p.inputs) == 2 and \
                    len(s) == 2 and c.size in (1, s[1]) and c.ndim <= 2 and \
                    (c.ndim < 2 or c.shape[0] == 1) and \
                    sum(x in n.inputs for n in self.g.nodes) == 1 and x not in self.g.outputs:
                # MatMul + Add: the bias of the fully connected layer
                b = np.broadcast_to(c.reshape(-1), (s[1],)).astype(np.float32)
                p.inputs.append(self.constant(out + ".bias", b))
                self.values[out] = x
                return
            try:
                full = np.broadcast_to(c, s) if c.ndim <= len(s) else None
            except ValueError:
                full = None
            if full is None:
                self.fail(f"the constant operand {c.shape} does not broadcast to {s} "
                          "(the output would be larger than the input)")
            x4 = self.nchw(x)
            s4 = self.g.shape(x4)
            f4 = full.reshape(s4)
            per_c = f4[:1, :, :1, :1]
            if (f4 == np.broadcast_to(per_c, s4)).all():
                vec = per_c.reshape(-1)
                scale = vec if op == "mul" else np.ones_like(vec)
                shift = vec if op == "add" else np.zeros_like(vec)
                ins = [x4, self.constant(out + ".scale", scale), self.constant(out + ".shift",
                                                                               shift)]
                y = self.add("scale_shift", ins, [self.out_name(out)]).outputs[0]
            else:
                y = self.add(op, [x4, self.constant(n1, f4)], [self.out_name(out)]).outputs[0]
            self.values[out] = self.reshaped(y, s, out)
            return
        x1 = self.tensor(n1)
        self.float_tensor(x1)
        s1 = self.shape(x1)
        if s1 != s and op == "mul" and len(s) == 4 and s1 == s[:2] + (1, 1):
            y = self.add("mul", [x, x1], [self.out_name(out)]).outputs[0]
        elif s1 != s and op == "mul" and len(s1) == 4 and s == s1[:2] + (1, 1):
            y = self.add("mul", [x1, x], [self.out_name(out)]).outputs[0]
            s = s1
        elif s1 != s:
            self.fail(f"operands {s} and {s1}: run-time operands must have one shape "
                      "(mul: or an (N, C, 1, 1) multiplier)")
        else:
            y = self.add(op, [x, x1], [self.out_name(out)]).outputs[0]
        self.values[out] = self.standin(y, s)

    def nchw(self, t: str) -> str:
        """t as a 4-D IR tensor ((N, F) becomes (N, F, 1, 1))."""
        s = self.g.shape(t)
        if len(s) == 4:
            return t
        return self.standin(self.add("reshape", [t], [self.out_name(f"{t}:4d")],
                                     shape=tuple(s) + (1, 1)).outputs[0], self.shape(t))

    def op_Add(self, node, a):
        self.binary(node, "add")

    def op_Mul(self, node, a):
        self.binary(node, "mul")

    def op_BatchNormalization(self, node, a):
        if a.get("training_mode", 0):
            self.fail("training_mode 1: only inference is supported")
        if len([o for o in node.output if o]) > 1:
            self.fail("its running mean/var outputs are used (training): only inference")
        if self.opset < 9 and not a.get("spatial", 1):
            self.fail("spatial 0 (per-element statistics) is not supported")
        x = self.tensor(node.input[0])
        self.float_tensor(x)
        s = self.shape(x)
        params = [self.const(t, what) for t, what in
                  zip(node.input[1:5], ("scale", "B", "mean", "var"))]
        if len(s) < 2 or any(np.asarray(p).shape != (s[1],) for p in params):
            self.fail(f"statistics must be per channel ({s[1] if len(s) > 1 else '?'},)")
        x4 = x
        if len(s) != 4:
            x4 = self.add("reshape", [x], [self.out_name(f"{x}:4d")],
                          shape=(s[0], s[1], int(np.prod(s[2:])), 1)).outputs[0]
        ins = [x4] + [self.constant(t) for t in node.input[1:5]]
        y = self.add("batchnorm", ins, [self.out_name(node.output[0])],
                     epsilon=float(a.get("epsilon", 1e-5))).outputs[0]
        self.values[node.output[0]] = y if len(s) == 4 else self.reshaped(y, s, node.output[0])

    def channels(self, t: str, axis: int) -> str:
        """An IR tensor whose axis 1 (channels) is ONNX axis `axis` of t."""
        s = self.shape(t)
        ax = axis + len(s) if axis < 0 else axis
        if len(self.g.shape(t)) == 2 and ax == 1:
            return self.nchw(t)
        if self.ir_axis(t, ax) != 1 or len(self.g.shape(t)) != 4:
            self.fail(f"axis {axis} of a {s} tensor: only the channels (axis 1) of "
                      "(N, C, H, W) (or the axis that maps to them) are supported")
        return t

    def view_out(self, y: str, like: str, axis: int, onnx_out: str) -> str:
        """The ONNX shape of a view op's output y: like's, with y's channels at axis."""
        s = list(self.shape(like))
        ax = axis + len(s) if axis < 0 else axis
        s[ax] = self.g.shape(y)[1]
        return self.reshaped(y, tuple(s), onnx_out)

    def channel_axis(self, a: dict, s: tuple, default: int = 0) -> None:
        axis = int(a.get("axis", default))
        axis = axis + len(s) if axis < 0 else axis
        if axis != 1 or len(s) != 4:
            self.fail(f"axis {a.get('axis', default)} of a {s} tensor: only the channels "
                      "(axis 1) of (N, C, H, W) are supported")

    def op_Concat(self, node, a):
        ins = [t for t in node.input if t]
        tensors = [t for t in ins if t in self.values]
        if not tensors:
            self.fail("all inputs are constant but were not folded")
        axis = int(a["axis"])
        ir = [self.channels(self.tensor(t), axis) for t in ins]
        y = self.add("concat", ir, [self.out_name(node.output[0])], axis=1).outputs[0]
        self.values[node.output[0]] = self.view_out(y, self.tensor(ins[0]), axis,
                                                    node.output[0])

    def op_Split(self, node, a):
        x0 = self.tensor(node.input[0])
        axis = int(a.get("axis", 0))
        x = self.channels(x0, axis)
        s = self.g.shape(x)
        outs = [o for o in node.output]
        if self.opset >= 13:
            split = self.opt_const(list(node.input), 1, "split")
        else:
            split = a.get("split")
        if split is None:
            k = int(a.get("num_outputs", len(outs)))
            if k != len(outs):
                self.fail(f"num_outputs {k} with {len(outs)} outputs")
            size = -(-s[1] // k)
            split = [size] * (k - 1) + [s[1] - size * (k - 1)]
        split = [int(v) for v in np.asarray(split).ravel()]
        if len(split) != len(outs) or any(v <= 0 for v in split):
            self.fail(f"split {split} into {len(outs)} outputs: every part must have channels")
        names = [self.out_name(o or f"{self.node_name}:{i}") for i, o in enumerate(outs)]
        node_ir = self.add("split", [x], names, split=split, axis=1)
        for o, t in zip(outs, node_ir.outputs):
            if o:
                self.values[o] = self.view_out(t, x0, axis, o)

    def op_Slice(self, node, a):
        x = self.tensor(node.input[0])
        s = self.shape(x)
        ins = list(node.input)
        if self.opset < 10:
            starts, ends = a["starts"], a["ends"]
            axes, steps = a.get("axes"), None
        else:
            starts = self.const(ins[1], "starts")
            ends = self.const(ins[2], "ends")
            axes = self.opt_const(ins, 3, "axes")
            steps = self.opt_const(ins, 4, "steps")
        starts = [int(v) for v in np.asarray(starts).ravel()]
        ends = [int(v) for v in np.asarray(ends).ravel()]
        axes = list(range(len(starts))) if axes is None else \
            [int(v) for v in np.asarray(axes).ravel()]
        steps = [1] * len(starts) if steps is None else [int(v) for v in
                                                          np.asarray(steps).ravel()]
        lo, hi = [0] * len(s), list(s)
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            ax = ax + len(s) if ax < 0 else ax
            if not 0 <= ax < len(s):
                self.fail(f"axis {ax} outside the rank {len(s)}")
            if sp != 1:
                self.fail(f"step {sp} on axis {ax}: only contiguous slices are supported")
            dim = s[ax]
            st = max(0, min(dim, st + dim if st < 0 else st))
            en = max(0, min(dim, en + dim if en < 0 else en))
            lo[ax], hi[ax] = st, en
        cut = [ax for ax in range(len(s)) if (lo[ax], hi[ax]) != (0, s[ax])]
        if any(hi[ax] <= lo[ax] for ax in range(len(s))):
            self.fail(f"the slice {list(zip(lo, hi))} is empty")
        if not cut:
            self.values[node.output[0]] = x
            return
        if len(cut) != 1:
            self.fail(f"slices axes {cut} of a {s} tensor: only channel slices (axis 1 of "
                      "(N, C, H, W)) are supported")
        ax = cut[0]
        xc = self.channels(x, ax)
        y = self.add("slice", [xc], [self.out_name(node.output[0])], start=lo[ax], end=hi[ax],
                     axis=1).outputs[0]
        self.values[node.output[0]] = self.view_out(y, x, ax, node.output[0])

    def target_shape(self, shape: np.ndarray, src: tuple, allowzero: bool) -> tuple:
        t = [int(v) for v in np.asarray(shape).ravel()]
        if not allowzero:
            t = [src[i] if v == 0 else v for i, v in enumerate(t)]
        size = int(np.prod(src))
        if t.count(-1) == 1:
            known = int(np.prod([v for v in t if v != -1]))
            if known <= 0 or size % known:
                self.fail(f"cannot reshape {src} to {t}")
            t[t.index(-1)] = size // known
        if int(np.prod(t)) != size:
            self.fail(f"cannot reshape {src} to {t}")
        return tuple(t)

    def op_Reshape(self, node, a):
        src = self.values.get(node.input[0])
        shape = self.const(node.input[1], "shape") if self.opset >= 5 else a["shape"]
        allowzero = bool(a.get("allowzero", 0))
        if isinstance(src, _Shuffle):
            if src.stage != 2:
                self.fail("a Reshape of a Reshape in the channel shuffle pattern")
            base = self.shape(src.src)
            t = self.target_shape(shape, src.shape, allowzero)
            if t != base:
                self.fail(f"the channel shuffle ends in {t}, not its input's shape {base}")
            self.values[node.output[0]] = self.add(
                "channel_shuffle", [src.src], [self.out_name(node.output[0])],
                groups=src.groups).outputs[0]
            return
        x = self.tensor(node.input[0])
        s = self.shape(x)
        t = self.target_shape(shape, s, allowzero)
        if len(t) == 5 and len(s) == 4 and t[0] == s[0] and t[1] * t[2] == s[1] and \
                t[3:] == s[2:]:
            self.values[node.output[0]] = _Shuffle(x, t[1], t, 1)
            return
        if t == s:
            self.values[node.output[0]] = x
            return
        if len(s) == 4 and len(t) == 2 and t[0] == s[0]:
            y = self.add("flatten", [x], [self.out_name(node.output[0])]).outputs[0]
        else:
            y = self.reshaped(x, t, node.output[0])
        self.values[node.output[0]] = y

    def op_Transpose(self, node, a):
        src = self.values.get(node.input[0])
        perm = tuple(int(v) for v in a.get("perm", ()))
        if isinstance(src, _Shuffle):
            if src.stage != 1 or perm != (0, 2, 1, 3, 4):
                self.fail(f"perm {perm} of (N, g, C/g, H, W): a channel shuffle transposes "
                          "(0, 2, 1, 3, 4)")
            n, grp, k, h, w = src.shape
            self.values[node.output[0]] = _Shuffle(src.src, grp, (n, k, grp, h, w), 2)
            return
        x = self.tensor(node.input[0])
        s = self.shape(x)
        perm = perm or tuple(reversed(range(len(s))))
        if perm == tuple(range(len(s))):
            self.values[node.output[0]] = x
            return
        moved = [s[p] for p, i in zip(perm, range(len(s))) if p != i]
        if all(d == 1 for d in moved):    # only axes of size 1 move: a reshape
            self.values[node.output[0]] = self.reshaped(x, tuple(s[p] for p in perm),
                                                        node.output[0])
            return
        self.fail(f"perm {perm} of a {s} tensor: only the channel shuffle pattern "
                  "(Reshape to (N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4), Reshape back) "
                  "is supported")


def standin_shape(shape) -> tuple:
    """The IR shape of an ONNX tensor: (N, C, H, W) and (N, F) as they are;
    another rank as a 4-D stand-in of the same elements in the same order
    ((n,) as (1, n, 1, 1), (a, b, c) as (1, a, b, c), rank 5+ with the leading
    axes merged). Graph.onnx_shapes maps a stand-in to its ONNX shape."""
    s = tuple(int(v) for v in shape)
    if len(s) in (2, 4):
        return s
    if len(s) == 0:
        return (1, 1, 1, 1)
    if len(s) == 1:
        return (1, s[0], 1, 1)
    if len(s) == 3:
        return (1,) + s
    return (int(np.prod(s[:len(s) - 3])),) + s[-3:]


def fuse_hard_swish(g: Graph) -> None:
    """x * HardSigmoid(x) (how torch.onnx.export writes hard-swish below
    opset 14) becomes one hard_swish act with the HardSigmoid's alpha, beta;
    not in a QDQ model that quantizes the HardSigmoid's output (its int8 form
    rounds there, then multiplies: two int8 layers, as the file says)."""
    prod = g.producers()
    for m in [n for n in g.nodes if n.op == "mul"]:
        for a, b in ((m.inputs[0], m.inputs[1]), (m.inputs[1], m.inputs[0])):
            p = prod.get(b)
            if p is None or p.op != "act" or p.attrs.get("kind") != "hard_sigmoid" or \
                    p.inputs[0] != a or b in g.outputs or g.tensors[b].quant is not None or \
                    sum(b in n.inputs for n in g.nodes) != 1:
                continue
            m.op = "act"
            m.inputs = [a]
            m.attrs = dict(kind="hard_swish", alpha=p.attrs["alpha"], beta=p.attrs["beta"])
            g.nodes.remove(p)
            g.tensors.pop(b, None)
            prod = g.producers()
            break


def _fold(op: str, args: list, a: dict, opset: int) -> list:
    """numpy for the constant-folded operators."""
    x = args[0] if args else None
    if op == "Constant":
        if "value" in a:
            return [a["value"]]
        for k, dt in (("value_float", np.float32), ("value_floats", np.float32),
                      ("value_int", np.int64), ("value_ints", np.int64)):
            if k in a:
                return [np.asarray(a[k], dt)]
        raise ValueError(f"Constant with attributes {sorted(a)}")
    if op in ("Identity",):
        return [x]
    if op == "CastLike":
        return [np.asarray(x).astype(np.asarray(args[1]).dtype)]
    if op == "Cast":
        return [np.asarray(x).astype(np_dtype(a["to"]))]
    if op == "Gather":
        return [np.take(x, np.asarray(args[1], np.int64), axis=int(a.get("axis", 0)))]
    if op in ("Unsqueeze", "Squeeze"):
        axes = a.get("axes") if opset < 13 else (None if len(args) < 2 or args[1] is None
                                                 else list(np.asarray(args[1]).ravel()))
        x = np.asarray(x)
        if op == "Squeeze":
            return [np.squeeze(x) if axes is None else
                    np.squeeze(x, tuple(int(v) % x.ndim for v in axes))]
        rank = x.ndim + len(axes)
        y = x
        for ax in sorted(int(v) % rank for v in axes):
            y = np.expand_dims(y, ax)
        return [y]
    if op == "Concat":
        parts = [np.asarray(v) for v in args if v is not None]
        return [np.concatenate(parts, axis=int(a["axis"]))]
    if op in ("Add", "Sub", "Mul", "Div", "Min", "Max", "Equal"):
        y, z = np.asarray(args[0]), np.asarray(args[1])
        if op == "Div" and y.dtype.kind in "iu":
            return [np.trunc(y / z).astype(y.dtype)]
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
             "Min": np.minimum, "Max": np.maximum, "Equal": np.equal}[op]
        return [f(y, z).astype(y.dtype) if op != "Equal" else f(y, z)]
    if op in ("Floor", "Ceil", "Sqrt", "Neg", "Relu"):
        f = {"Floor": np.floor, "Ceil": np.ceil, "Sqrt": np.sqrt, "Neg": np.negative,
             "Relu": lambda v: np.maximum(v, 0)}[op]
        return [f(np.asarray(x))]
    if op == "Where":
        return [np.where(args[0], args[1], args[2])]
    if op == "Slice":
        x = np.asarray(x)
        if opset < 10:
            starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
        else:
            starts, ends = args[1], args[2]
            axes = args[3] if len(args) > 3 else None
            steps = args[4] if len(args) > 4 else None
        starts = list(np.asarray(starts).ravel())
        axes = range(len(starts)) if axes is None else list(np.asarray(axes).ravel())
        steps = [1] * len(starts) if steps is None else list(np.asarray(steps).ravel())
        sl = [slice(None)] * x.ndim
        for st, en, ax, sp in zip(starts, list(np.asarray(ends).ravel()), axes, steps):
            big = np.iinfo(np.int64).max
            sl[int(ax)] = slice(int(st), None if abs(int(en)) >= big // 2 and int(en) > 0
                                else int(en), int(sp))
        return [x[tuple(sl)]]
    if op == "Reshape":
        shape = [int(v) for v in np.asarray(args[1]).ravel()]
        x = np.asarray(x)
        if not a.get("allowzero", 0):
            shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
        return [x.reshape(shape)]
    if op == "Flatten":
        x = np.asarray(x)
        axis = int(a.get("axis", 1)) % max(x.ndim, 1)
        return [x.reshape(int(np.prod(x.shape[:axis])), -1)]
    if op == "ConstantOfShape":
        v = a.get("value", np.zeros(1, np.float32))
        return [np.full([int(s) for s in np.asarray(x).ravel()], np.asarray(v).ravel()[0],
                        np.asarray(v).dtype)]
    if op == "Range":
        return [np.arange(np.asarray(args[0]), np.asarray(args[1]), np.asarray(args[2]))]
    if op == "Transpose":
        perm = a.get("perm")
        return [np.transpose(x, perm)]
    if op == "Expand":
        shape = [int(v) for v in np.asarray(args[1]).ravel()]
        return [np.asarray(x) * np.ones(shape, np.asarray(x).dtype)]
    raise ValueError(f"no constant folding for {op}")


# Inputs at these positions are parameters (weights, statistics, bounds, shapes):
# parameter_inputs finds graph inputs there, which load(constants=) can bind.
PARAMETERS = {"Conv": (1, 2), "BatchNormalization": (1, 2, 3, 4), "Gemm": (1, 2),
              "MatMul": (1,), "Clip": (1, 2), "Slice": (1, 2, 3, 4), "Split": (1,),
              "Reshape": (1,), "ReduceMean": (1,), "Dropout": (1, 2)}


def parameter_inputs(model: Any) -> list:
    """Graph inputs of an ONNX model that feed a parameter position (a Conv's W
    and B, a Gemm's B and C, Clip's bounds, Reshape's shape, ...): in a real
    model they are initializers; a test feeding them as inputs can bind them."""
    graph_inputs = [i.name for i in model.graph.input]
    found = set()
    for n in model.graph.node:
        ins = list(n.input)
        found.update(ins[i] for i in PARAMETERS.get(n.op_type, ()) if i < len(ins) and
                     ins[i] in graph_inputs)
    return [t for t in graph_inputs if t in found]


def onnx_shape(graph: Graph, t: str) -> tuple:
    """The ONNX shape of IR tensor t of a loaded graph (a stand-in's original)."""
    return getattr(graph, "onnx_shapes", {}).get(t, graph.shape(t))


def as_feeds(graph: Graph, arrays: Any) -> dict:
    """Input arrays in ONNX shapes (a list in the graph's input order, a dict
    by name, or one array) as the IR's {input: float32 array of its IR shape}."""
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    if not isinstance(arrays, Mapping):
        arrays = dict(zip(graph.inputs, arrays))
    return {t: np.ascontiguousarray(arrays[t], np.float32).reshape(graph.shape(t))
            for t in graph.inputs}


def as_outputs(graph: Graph, values: Mapping[str, np.ndarray]) -> list:
    """The graph's outputs (IR tensor -> array) in ONNX order and shapes."""
    return [np.asarray(values[t]).reshape(onnx_shape(graph, t)) for t in graph.outputs]
