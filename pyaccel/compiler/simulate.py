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
from ..jobs import JobResult, Layer2, LayerCost, View
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
        st = v.strides or (shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1)
        return np.lib.stride_tricks.as_strided(buf.mem[v.offset:].view(np.float32), shape,
                                               tuple(4 * s for s in st))

    def _tensor(self, t, shape) -> np.ndarray:
        return self.buffers[t.handle].array(shape, np.float32, t.offset)

    def run_layer(self, layer: Layer2) -> None:
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
