"""A network prepared on the device: weights uploaded once, every layer in
one descriptor chain, one submit per inference."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Optional

import numpy as np

from .errors import ShapeError
from .graph import Conv2d, Model
from .jobs import JobResult, Layer, Tensor, encode
from .ops import ALIGN, window_geometry

if TYPE_CHECKING:
    from .device import Device


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


def _softmax_rows(y: np.ndarray) -> None:
    """Softmax of each row of a float32 (N, K) array, in place (float32 is
    ample for probabilities; the guest's emulated CPU makes float64 costly)."""
    y -= y.max(axis=1, keepdims=True)
    np.exp(y, out=y)
    y /= y.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class LayerStats:
    """One layer of an inference, as the device measured it."""

    name: str
    op: str
    macs: int
    device_ns: int
    cycles: int
    bytes: int


@dataclass(frozen=True)
class Stages:
    """Where one call's time went on this CPU, in ns: the input copied in, the
    SUBMIT ioctl, the WAIT ioctl (the device's work and the completion), the
    output copied out, the softmax."""

    input: int
    submit: int
    wait: int
    output: int
    softmax: int


@dataclass(frozen=True)
class Inference:
    """What one call of a CompiledModel returns."""

    output: np.ndarray          # class probabilities (softmax) or scores, (N, classes)
    job: JobResult              # totals: device_ns, cycles, macs, bytes, latency_ns
    wall_ns: int                # from writing the input to reading the output
    model_clock_mhz: int        # the cost model's clock, from the device
    names: tuple = field(default=(), repr=False)    # (layer name, op) of each layer
    stages: Optional[Stages] = None                 # the call's split (Stages)

    @cached_property
    def layers(self) -> list[LayerStats]:
        """Each layer's costs (made on first access, not on every call)."""
        return [LayerStats(name, op, cost.macs, cost.device_ns, cost.cycles, cost.bytes)
                for (name, op), cost in zip(self.names, self.job.layers)]

    @property
    def modelled_ms(self) -> float:
        """The modelled silicon's time for this inference."""
        return self.job.cycles / (self.model_clock_mhz * 1e3)


class CompiledModel:
    """`model.compile(device, batch)`: call it with an (N, C, H, W) array."""

    def __init__(self, model: Model, device: "Device", batch: int = 1) -> None:
        self.model, self.device, self.batch = model, device, batch
        shapes = [model.input_shape] + model.shapes()
        self._act_offsets, size = [], 0
        for s in shapes:
            self._act_offsets.append(size)
            size += _aligned(4 * batch * int(np.prod(s)))
        self._acts = device.buffer(size)
        self._weights, w_offsets = self._upload(model)
        self.layers = []
        for i, op in enumerate(model.ops):
            s_in = (batch,) + shapes[i]
            t_in = Tensor(self._acts.handle, self._act_offsets[i])
            t_out = Tensor(self._acts.handle, self._act_offsets[i + 1])
            if isinstance(op, Conv2d):
                g = window_geometry(device, s_in, op.c_out, op.weight_shape()[2:], op.stride,
                                    op.padding, op.dilation, op.groups)
                w_key, b_key = f"{op.name}.weight", f"{op.name}.bias"
                layer = Layer("conv", t_in, t_out, Tensor(self._weights.handle, w_offsets[w_key]),
                              Tensor(self._weights.handle, w_offsets[b_key])
                              if b_key in w_offsets else None, op.activation or "none", g)
            else:
                kernel, stride = op.window(shapes[i])
                g = window_geometry(device, s_in, s_in[1], kernel, stride, op.padding, 1, 1)
                layer = Layer(f"{op.kind}pool", t_in, t_out, activation=op.activation or "none",
                              geometry=g)
            if tuple(g[k] for k in ("c_out", "h_out", "w_out")) != shapes[i + 1]:
                raise ShapeError(f"{op.name}: device output {g} differs from the model's")
            self.layers.append(layer)
        self._encoded = encode(self.layers)
        self._names = tuple((op.name, layer.op) for op, layer in zip(model.ops, self.layers))
        self.input = self._acts.array((batch,) + shapes[0], offset=self._act_offsets[0])
        self._output = self._acts.array((batch,) + shapes[-1], offset=self._act_offsets[-1])

    def _upload(self, model: Model):
        offsets, size = {}, 0
        for key, a in model.weights.items():
            offsets[key] = size
            size += _aligned(a.nbytes)
        buf = self.device.buffer(max(size, 4))
        for key, a in model.weights.items():
            buf.array(a.shape, offset=offsets[key])[...] = a
        return buf, offsets

    def __call__(self, x: np.ndarray, timeout: Optional[float] = 60) -> Inference:
        x = np.asarray(x, np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.shape != self.input.shape:
            raise ShapeError(f"input shape {x.shape}: this model was compiled for "
                             f"{self.input.shape}")
        t0 = time.monotonic_ns()
        self.input[...] = x
        t1 = time.monotonic_ns()
        job = self.device.submit(self._encoded)
        t2 = time.monotonic_ns()
        result = job.wait(timeout)
        t3 = time.monotonic_ns()
        y = self._output.reshape(self.batch, -1).copy()
        t4 = time.monotonic_ns()
        if self.model.softmax:
            _softmax_rows(y)
        stages = Stages(t1 - t0, t2 - t1, t3 - t2, t4 - t3, time.monotonic_ns() - t4)
        return Inference(y, result, t4 - t0, self.device.info.model_clock_mhz, self._names,
                         stages)

    def close(self) -> None:
        self._acts.destroy()
        self._weights.destroy()

    def __enter__(self) -> "CompiledModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
