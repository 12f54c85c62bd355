"""The int8 part of `make bench`, host side (the guest runs the model):

- prepare(): MobileNet-v1 1.0 at 224 (nets.INT8) quantized by
  pyaccel.quantize on nets.INT8_CALIBRATION images (standard normal, seed
  2), saved where the guest reads it (the repository is its read-only share);
- onnxruntime(): the same float network exported with torch.onnx.export
  (bench/torchgraph.py, opset 13), quant_pre_process, then quantize_static
  (QDQ, per-channel symmetric int8 weights, int8 activations) on the same
  calibration images; timed with the benchmark's thread count;
- golden(): the golden model's output (pyaccel.compiler.golden through
  QuantizedModel.reference) for the input the guest used: the device's must
  equal it bit for bit.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

import nets
from stats import repeat, summary

TOP = Path(__file__).resolve().parents[1]
MODEL = TOP / "build" / "bench-int8" / f"{nets.INT8.label}-int8.npz"


def calibration(shape: tuple) -> np.ndarray:
    return np.random.default_rng(2).standard_normal((nets.INT8_CALIBRATION,) + tuple(shape),
                                                    dtype=np.float32)


def prepare(path: Path = MODEL) -> dict:
    from pyaccel.quantize import quantize

    t0 = time.monotonic()
    model = nets.INT8.build()
    qm = quantize(model, calibration(model.input_shape))
    path.parent.mkdir(parents=True, exist_ok=True)
    qm.save(path)
    return dict(path=str(path.relative_to(TOP)), images=nets.INT8_CALIBRATION,
                precision={k: sum(1 for v in qm.precision.values() if v == k)
                           for k in ("int8", "f32")},
                quantize_s=round(time.monotonic() - t0, 1))


def golden(x: np.ndarray, path: Path = MODEL) -> np.ndarray:
    from pyaccel.quantize import QuantizedModel

    return QuantizedModel.load(path).reference(x)


def onnxruntime(x: np.ndarray, threads: int, repeats: int) -> dict:
    """onnxruntime int8 (QDQ) of nets.INT8's float network: e2e summary."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import torchgraph

    model = nets.INT8.build()
    cal = calibration(model.input_shape)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(cal[i:i + 1] for i in range(len(cal)))

        def get_next(self):
            v = next(self.it, None)
            return None if v is None else {"input": v}

    with tempfile.TemporaryDirectory() as d:
        f32, pre, q8 = (Path(d) / n for n in ("f32.onnx", "pre.onnx", "int8.onnx"))
        net = torchgraph.twin(model)
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        torch.onnx.export(net, (torch.from_numpy(x),), str(f32), opset_version=13,
                          input_names=["input"], output_names=["output"], dynamo=False)
        quant_pre_process(str(f32), str(pre))
        quantize_static(str(pre), str(q8), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(q8), so, providers=["CPUExecutionProvider"])
        feed = {"input": x}
        time.sleep(0.05)
        times = repeat(lambda: sess.run(None, feed), repeats, warmup=5)
        y = sess.run(None, feed)[0]
    top1 = float(np.mean(y.argmax(1) == ref.argmax(1)))
    return dict(e2e=summary(times), onnxruntime=ort.__version__, threads=threads,
                max_abs_diff_vs_float=float(np.abs(y - ref).max()), top1_agrees_float=top1)
