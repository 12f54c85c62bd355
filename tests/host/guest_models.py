"""Zoo networks as ONNX files for the guest, with onnxruntime's answers.

For each network (every zoo family at two widths, depths or resolutions,
reduced to 10 classes and small inputs so that the guest stays fast):

- ``<name>/model.onnx``: the float network (tests/host/zoo_onnx.py writes it
  with torch.onnx.export's spellings; batch norms unfolded);
- ``<name>/model-qdq.onnx`` (the int8 families): onnxruntime's
  ``quantize_static`` of it, QDQ format, per-channel int8 weights, int8
  activations, calibrated on 16 seeded images, after ``quant_pre_process``;
- ``<name>/data.npz``: a seeded input ``x`` (4 images), onnxruntime's float
  output ``y``; for the QDQ model ``y_int8_ref`` (onnxruntime with graph
  optimizations off: the QDQ semantics, each Q/DQ pair on its own),
  ``y_int8_ort`` (optimizations on: its fused int8 kernels, what a user runs)
  and ``y_golden`` (pyaccel's golden model of the imported QDQ model).

``manifest.json`` lists them with the export key (a hash of this file,
zoo_onnx.py, export_dir.py, the compiler and the onnx/onnxruntime
versions). The host's conftest writes the folder before the guest suite
boots; tests/guest/test_onnx_models.py runs every model on the device.

    python tests/host/guest_models.py [DIR]     # default build/guest-models
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from export_dir import export_once

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP))
sys.path.insert(0, str(Path(__file__).resolve().parent))
DEFAULT_DIR = TOP / "build" / "guest-models"
IMAGES, CALIB = 4, 16


def nets() -> dict:
    """name -> (GraphModel factory, quantize too?)."""
    from pyaccel import models
    from pyaccel.compiler import zoo
    from pyaccel.compiler.builder import GraphModel

    def v1(w, r):
        m = models.mobilenet_v1(w, r, num_classes=10)
        return GraphModel(m.to_graph(), dict(m.config))

    return {
        "mobilenet_v1-0.25-32": (lambda: v1(0.25, 32), True),
        "mobilenet_v1-0.5-64": (lambda: v1(0.5, 64), False),
        "mobilenet_v2-0.35-32": (lambda: zoo.mobilenet_v2(0.35, 32, 10), True),
        "mobilenet_v2-0.5-64": (lambda: zoo.mobilenet_v2(0.5, 64, 10), False),
        "resnet18-0.25-32": (lambda: zoo.resnet(18, 0.25, 32, 10), True),
        "resnet34-0.125-32": (lambda: zoo.resnet(34, 0.125, 32, 10), False),
        "resnet50-0.125-32": (lambda: zoo.resnet(50, 0.125, 32, 10), False),
        "shufflenet_v2-0.5-32": (lambda: zoo.shufflenet_v2(0.5, 32, 10), True),
        "shufflenet_v2-1.0-64": (lambda: zoo.shufflenet_v2(1.0, 64, 10), False),
        "densenet121-k8-32": (lambda: zoo.densenet(121, 8, 32, 10), False),
        "densenet-k12-6.12-32": (lambda: zoo.densenet(121, 12, 32, 10, blocks=(6, 12)), False),
    }


CACHE = Path(os.environ.get("PYACCEL_CACHE", Path.home() / ".cache" / "pyaccel"))
TORCH_NETS = ("unseen", "resnet_like", "mobilenet_v2_like", "shufflenet_v2_like",
              "densenet_like")


def torch_key() -> str:
    """The key of the PyTorch exports (test_onnx_torch.py makes them)."""
    h = hashlib.sha256()
    for f in ("tests/host/torch_zoo.py", "bench/requirements.txt"):
        h.update((TOP / f).read_bytes())
    return h.hexdigest()[:16]


def torch_exports() -> Path | None:
    """The folder of torch.onnx.export's files of tests/host/torch_zoo.py, if
    this machine made them (they need torch: the bench venv)."""
    d = CACHE / f"onnx-torch-{torch_key()}"
    return d if (d / ".done").exists() else None


def key() -> str:
    import onnx
    import onnxruntime

    h = hashlib.sha256()
    h.update(str(torch_exports()).encode())
    here = Path(__file__).resolve().parent
    for f in [here / "guest_models.py", here / "zoo_onnx.py", here / "export_dir.py",
              *sorted((TOP / "pyaccel").rglob("*.py"))]:
        h.update(f.read_bytes())
    h.update(f"{onnx.__version__} {onnxruntime.__version__}".encode())
    return h.hexdigest()[:16]


def _session(path: Path, optimize: bool):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run(sess, x: np.ndarray) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def quantize_qdq(src: Path, dst: Path, shape: tuple, reduce_range: bool = True,
                 activation_type=None) -> None:
    """onnxruntime's static QDQ quantization of src, as its docs recommend
    (reduce_range: 7-bit weights, which its u8s8 kernels need on CPUs without
    VNNI to match its own QDQ semantics)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.it = iter([{"input": rng.standard_normal((1,) + shape, dtype=np.float32)}
                            for _ in range(CALIB)])

        def get_next(self):
            return next(self.it, None)

    pre = dst.with_name("pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=activation_type or QuantType.QInt8,
                    weight_type=QuantType.QInt8, reduce_range=reduce_range)
    pre.unlink()


def export(out: Path = DEFAULT_DIR) -> dict:
    """Write (or reuse, if its key matches) the folder; returns the manifest."""
    return export_once(out, key(), _write_models)


def _write_models(tmp: Path) -> dict:
    """Fill the empty folder `tmp`; returns its manifest but the key."""
    import onnx

    import zoo_onnx
    from pyaccel import onnx as ponnx

    manifest: dict = {"models": {}}
    for name, (factory, int8) in nets().items():
        model = factory()
        d = tmp / name
        d.mkdir()
        onnx.save(zoo_onnx.to_onnx(model.graph), str(d / "model.onnx"))
        shape = tuple(model.input_shape)
        x = np.random.default_rng(7).standard_normal((IMAGES,) + shape, dtype=np.float32)
        data = {"x": x, "y": _run(_session(d / "model.onnx", True), x)}
        entry = {"macs": model.macs, "params": model.params, "int8": int8}
        if int8:
            quantize_qdq(d / "model.onnx", d / "model-qdq.onnx", shape)
            qm = ponnx.load_model(str(d / "model-qdq.onnx"))
            data["y_int8_ref"] = _run(_session(d / "model-qdq.onnx", False), x)
            data["y_int8_ort"] = _run(_session(d / "model-qdq.onnx", True), x)
            data["y_golden"] = qm.reference(x)
            out_q = qm.graph.tensors[qm.graph.producer(qm.graph.outputs[0]).inputs[0]].quant
            entry.update(out_scale=float(out_q.scale), float_layers=sorted(qm.keep_float))
        np.savez(d / "data.npz", **data)
        manifest["models"][name] = entry
    manifest["torch"] = {}
    src = torch_exports()
    if src is None:
        manifest["torch_missing"] = ("no PyTorch exports on this machine: they need torch "
                                     "(the bench venv; make bench makes it, or PYACCEL_TORCH=1 "
                                     "make test)")
    for net in TORCH_NETS if src else ():
        for opset in (13, 17):
            name = f"{net}-opset{opset}"
            d = tmp / "torch" / name
            d.mkdir(parents=True)
            shutil.copy(src / f"{name}.onnx", d / "model.onnx")
            x = np.load(src / f"{net}.npz")["x"]
            np.savez(d / "data.npz", x=x, y=_session(d / "model.onnx", True).run(
                None, {"input": x})[0])
            manifest["torch"][name] = {}
    return manifest


if __name__ == "__main__":
    d = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    print(json.dumps(export(d), indent=1))
