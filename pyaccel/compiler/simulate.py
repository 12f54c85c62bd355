"""A numpy model of a convaccel 2.0 device running Layer2 lists: buffers are
host memory, each layer computed by pyaccel.reference over the layer's views
(strides and all). The compiler's host tests run whole compiled networks on
it; it checks what the encoder wrote, not the device's own validation."""
from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Optional

import numpy as np

from .. import reference as ref
from .. import reference_int8 as ri8
from ..jobs import NUMPY_DTYPES, JobResult, Layer2, LayerCost, View
from .partition import DEFAULT_INFO


class HostBuffer:
    _handles = itertools.count(1)

    def __init__(self, size: int) -> None:
        self.handle, self.size = next(self._handles), size
        self.mem = np.zeros(size, np.uint8)

    def array(self, shape, dtype=np.float32, offset: int = 0) -> np.ndarray:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape, dtype=np.int64))
        return self.mem[offset:offset + count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)

    def destroy(self) -> None:
        pass


class HostDevice:
    """Buffers and submit() like a pyaccel.Device, computed in numpy."""

    simulated = True

    def __init__(self, info: Optional[SimpleNamespace] = None) -> None:
        self.info = info or SimpleNamespace(**vars(DEFAULT_INFO), model_clock_mhz=1000)
        self.buffers: dict = {}
        self.jobs = 0

    def buffer(self, size: int) -> HostBuffer:
        b = HostBuffer(size)
        self.buffers[b.handle] = b
        return b

    def _view(self, v: View, shape) -> np.ndarray:
        buf = self.buffers[v.handle]
        dt = np.dtype(NUMPY_DTYPES[v.dtype])
        st = v.strides or (shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1)
        mem = buf.mem[v.offset:]
        mem = mem[:len(mem) // dt.itemsize * dt.itemsize]
        return np.lib.stride_tricks.as_strided(mem.view(dt), shape,
                                               tuple(dt.itemsize * s for s in st))

    def _tensor(self, t, shape, dtype=np.float32) -> np.ndarray:
        return self.buffers[t.handle].array(shape, dtype, t.offset)

    def run_layer(self, layer: Layer2) -> None:
        if "s8" in (layer.in0.dtype, layer.out.dtype):
            return self.run_layer_int8(layer)
        g = layer.geometry
        n, ci, hi, wi = g["n"], g["c_in"], g["h_in"], g["w_in"]
        co, ho, wo = g["c_out"], g["h_out"], g["w_out"]
        x = np.array(self._view(layer.in0, (n, ci, hi, wi)))
        act = ref.Activation(None if layer.activation == "none" else layer.activation,
                             layer.act_alpha, layer.act_beta)
        pads = (g.get("pad_top", 0), g.get("pad_bottom", 0), g.get("pad_left", 0),
                g.get("pad_right", 0))
        op = layer.op
        if op == "conv":
            w = self._tensor(layer.weight, (co, ci // g["groups"], g["kh"], g["kw"]))
            b = self._tensor(layer.bias, (co,)) if layer.bias is not None else None
            y = ref.conv2d(x, w, b, (g["stride_h"], g["stride_w"]), pads,
                           (g["dil_h"], g["dil_w"]), g["groups"], act)
        elif op in ("maxpool", "avgpool"):
            f = ref.max_pool2d if op == "maxpool" else ref.avg_pool2d
            y = f(x, (g["kh"], g["kw"]), (g["stride_h"], g["stride_w"]), pads, act)
        elif op == "global_avgpool":
            y = ref.global_avg_pool2d(x, act)
        elif op == "global_maxpool":
            y = ref.global_max_pool2d(x, act)
        elif op in ("add", "mul"):
            s1 = (n, ci, 1, 1) if layer.broadcast else (n, ci, hi, wi)
            x1 = np.array(self._view(layer.in1, s1))
            y = (ref.add if op == "add" else ref.mul)(x, x1, act)
        elif op == "scale_shift":
            y = ref.scale_shift(x, self._tensor(layer.weight, (ci,)),
                                self._tensor(layer.bias, (ci,)), act)
        elif op == "fc":
            w = self._tensor(layer.weight, (co, ci))
            b = self._tensor(layer.bias, (co,)) if layer.bias is not None else None
            y = ref.fc(x, w, b, act)
        elif op == "act":
            y = ref.act(x, act)
        else:
            raise NotImplementedError(f"the simulator has no {op}")
        self._view(layer.out, (n, co, ho, wo))[...] = y

    def submit(self, layers, timeout_ms: int = 0):
        costs = []
        for layer in layers:
            self.run_layer(layer)
            costs.append(LayerCost(0, 0, 0, 0))
        self.jobs += 1
        result = JobResult("ok", "none", None, len(layers), 0, 0, 0, 0, 0, 0, tuple(costs))
        return SimpleNamespace(wait=lambda timeout=None, check=True: result)

    def run_layer_int8(self, layer: Layer2) -> None:
        """An int8 layer (or QUANTIZE / DEQUANTIZE) by pyaccel.reference_int8."""
        g, q = layer.geometry, layer.quant
        n, ci, hi, wi = g["n"], g["c_in"], g["h_in"], g["w_in"]
        co, ho, wo = g["c_out"], g["h_out"], g["w_out"]
        x = np.array(self._view(layer.in0, (n, ci, hi, wi)))
        op = layer.op
        if op == "dequantize":
            y = ri8.dequantize(x, q["qscale"], q.get("zp_in0", 0))
            self._view(layer.out, (n, co, ho, wo))[...] = y
            return
        count = {"conv": co, "fc": co, "scale_shift": ci, "add": 3}.get(op, 1)
        rq = (self._tensor(layer.requant, (count, 2), np.int32)
              if layer.requant is not None else None)
        fin = dict(zp_out=q.get("zp_out", 0), act_min=q.get("act_min", -128),
                   act_max=q.get("act_max", 127),
                   lut=self._tensor(layer.lut, (256,), np.int8) if layer.lut is not None
                   else None)
        zp = q.get("zp_in0", 0)
        pads = (g.get("pad_top", 0), g.get("pad_bottom", 0), g.get("pad_left", 0),
                g.get("pad_right", 0))
        bias = lambda c: (self._tensor(layer.bias, (c,), np.int32)  # noqa: E731
                          if layer.bias is not None else None)
        if op == "quantize":
            zp_out = fin.pop("zp_out")
            y = ri8.quantize(x, q["qscale"], zp_out, **fin)
        elif op == "conv":
            w = self._tensor(layer.weight, (co, ci // g["groups"], g["kh"], g["kw"]), np.int8)
            y = ri8.conv2d_int8(x, w, bias(co), (g["stride_h"], g["stride_w"]), pads,
                                (g["dil_h"], g["dil_w"]), g["groups"], requant=rq, zp_in=zp,
                                **fin)
        elif op == "fc":
            w = self._tensor(layer.weight, (co, ci), np.int8)
            y = ri8.fc_int8(x, w, bias(co), requant=rq, zp_in=zp, **fin)
        elif op == "scale_shift":
            y = ri8.scale_shift_int8(x, self._tensor(layer.weight, (ci,), np.int8), bias(ci),
                                     requant=rq, zp_in=zp, **fin)
        elif op in ("add", "mul"):
            s1 = (n, ci, 1, 1) if layer.broadcast else (n, ci, hi, wi)
            x1 = np.array(self._view(layer.in1, s1))
            f = ri8.add_int8 if op == "add" else ri8.mul_int8
            y = f(x, x1, requant=rq, zp_in0=zp, zp_in1=q.get("zp_in1", 0), **fin)
        elif op == "maxpool":
            y = ri8.max_pool2d_int8(x, (g["kh"], g["kw"]), (g["stride_h"], g["stride_w"]), pads,
                                    zp_in=zp, **fin)
        elif op == "avgpool":
            y = ri8.avg_pool2d_int8(x, (g["kh"], g["kw"]), (g["stride_h"], g["stride_w"]), pads,
                                    requant=rq, zp_in=zp, **fin)
        elif op == "global_avgpool":
            y = ri8.global_avg_pool2d_int8(x, requant=rq, zp_in=zp, **fin)
        elif op == "global_maxpool":
            y = ri8.global_max_pool2d_int8(x, zp_in=zp, **fin)
        elif op == "act":
            y = ri8.act_int8(x, requant=rq, zp_in=zp, **fin)
        else:
            raise NotImplementedError(f"the simulator has no int8 {op}")
        self._view(layer.out, (n, co, ho, wo))[...] = y
