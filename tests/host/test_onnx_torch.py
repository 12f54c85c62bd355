"""PyTorch twins (tests/host/torch_zoo.py) exported by torch.onnx.export at
opset 13 and 17, loaded with pyaccel.onnx and run (IR numpy semantics, and
the compiled graph on the simulated device) against onnxruntime and
PyTorch's own output: max |error| <= 1e-4 of the output's range.

torch is not in the test venv (it would add minutes to a cold make test):
the exports come from the bench venv (bench/requirements.txt, torch 2.13.0
CPU) and are cached in $PYACCEL_CACHE/onnx-torch-<hash of torch_zoo.py and
bench/requirements.txt>/. They are made when torch imports here, when the
bench venv exists (make bench, make study made it) or with PYACCEL_TORCH=1
(which creates the bench venv, a few minutes); otherwise these tests are
skipped, saying so.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import guest_models  # noqa: E402
from pyaccel import onnx as ponnx  # noqa: E402
from pyaccel.compiler import api, execute  # noqa: E402
from pyaccel.compiler.simulate import HostDevice  # noqa: E402

TOP = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("PYACCEL_CACHE", Path.home() / ".cache" / "pyaccel"))
NETS = ("unseen", "resnet_like", "mobilenet_v2_like", "shufflenet_v2_like", "densenet_like")
OPSETS = (13, 17)


def _key() -> str:
    return guest_models.torch_key()


def _torch_python() -> str | None:
    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    if os.environ.get("PYACCEL_TORCH") == "1" or glob.glob(str(CACHE / "venv-bench-*/.done")):
        r = subprocess.run(["bash", str(TOP / "scripts" / "venv.sh"), "bench/requirements.txt"],
                           capture_output=True, text=True, cwd=TOP)
        if r.returncode == 0:
            return r.stdout.strip().splitlines()[-1]
        pytest.fail(f"creating the bench venv failed:\n{r.stderr[-2000:]}")
    return None


@pytest.fixture(scope="module")
def exports() -> Path:
    out = CACHE / f"onnx-torch-{_key()}"
    if (out / ".done").exists():
        return out
    py = _torch_python()
    if py is None:
        pytest.skip("no torch: the PyTorch exports need the bench venv (make bench made it) "
                    "or PYACCEL_TORCH=1 to create it; test_onnx.py covers the same "
                    "networks written with onnx.helper")
    tmp = out.with_name(out.name + ".part")
    r = subprocess.run([py, str(TOP / "tests" / "host" / "torch_zoo.py"), str(tmp)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"torch.onnx.export failed:\n{r.stderr[-3000:]}"
    (tmp / ".done").touch()
    os.replace(tmp, out)
    return out


def _session(path: Path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("net", NETS)
def test_torch_export(exports, net, opset):
    path = exports / f"{net}-opset{opset}.onnx"
    data = np.load(exports / f"{net}.npz")
    x, y_torch = data["x"], data["y"]
    g = ponnx.load(path)
    want = _session(path).run(None, {"input": x})[0]
    span = float(want.max() - want.min()) or 1.0
    got = execute.run(g, x)[g.outputs[0]].reshape(want.shape)
    with api.compile(g, HostDevice()) as cg:
        inf = cg(x)
    errs = {"IR vs onnxruntime": float(np.abs(got - want).max()) / span,
            "IR vs torch": float(np.abs(got - y_torch).max()) / span,
            "simulated device vs onnxruntime":
                float(np.abs(inf.output.reshape(want.shape) - want).max()) / span}
    print(f"{net} opset {opset}: " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items())
          + f"; {inf.where()}")
    assert max(errs.values()) <= 1e-4, errs
