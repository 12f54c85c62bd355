"""`make study`, step 2 (guest half): trained runs on the device, float32 and
int8, through pyaccel's compiler and the real driver. Runs inside the board.

    python3 study/guest_eval.py --jobs build/study/eval/jobs.json --out /out [--repeats N]

jobs.json: {"test": <npz of the test images, relative to the repo>,
"runs": [{"id", "dir"}, ...]}, each dir holding float.npz and int8.npz
(GraphModel.save / QuantizedModel.save). Per run, written at once to
OUT/<id>.json (a run cut short keeps the finished ones): the device's
predictions on every test image (batches of BATCH) for both, and batch-1
latency: e2e around the compiled call in guest Python, the device's compute
(device_ns), the modelled silicon (cycles at its clock) and bytes moved.
Numpy and pyaccel only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
sys.path[:0] = [str(HERE), str(TOP)]
import fashion  # noqa: E402
import pyaccel  # noqa: E402
from pyaccel.compiler.builder import GraphModel  # noqa: E402

BATCH = 250


def device_predictions(dev, model, x: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Class predictions of inputs x (N, ...) on the device; the last batch is
    padded with zeros (their predictions are dropped)."""
    batch = min(batch, len(x))
    preds = []
    with model.compile(dev, batch) as net:
        for i in range(0, len(x), batch):
            chunk = x[i:i + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:],
                                                        np.float32)])
            preds.append(np.asarray(net(chunk).output).reshape(batch, -1).argmax(axis=1))
    return np.concatenate(preds)[:len(x)]


def latency(dev, model, x1: np.ndarray, repeats: int) -> dict:
    """Batch-1 inference: medians over `repeats` calls after 3 warm-up calls."""
    with model.compile(dev, 1) as net:
        for _ in range(3):
            net(x1)
        wall, infs = [], []
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            infs.append(net(x1))
            wall.append(time.perf_counter_ns() - t0)
    job = infs[-1].job
    return dict(e2e_ms=float(np.median(wall)) / 1e6,
                device_ms=float(np.median([i.device_ns for i in infs])) / 1e6,
                modelled_ms=float(infs[-1].modelled_ms), cycles=int(infs[-1].cycles),
                bytes_read=int(job.bytes_read), bytes_written=int(job.bytes_written),
                jobs=len(infs[-1].jobs))


def as_input(pixels: np.ndarray, model) -> np.ndarray:
    x = fashion.to_input(pixels)
    return x.reshape((len(x),) + tuple(model.input_shape))


def evaluate(dev, run_dir: Path, pixels: np.ndarray, labels: np.ndarray,
             repeats: int) -> dict:
    out: dict = {}
    for kind in ("float", "int8"):
        model = GraphModel.load(run_dir / f"{kind}.npz")
        x = as_input(pixels, model)
        t0 = time.perf_counter_ns()
        preds = device_predictions(dev, model, x)
        seconds = (time.perf_counter_ns() - t0) / 1e9
        out[kind] = dict(correct=int((preds == labels).sum()),
                         accuracy=float((preds == labels).mean()),
                         predictions="".join(map(str, preds)), test_s=seconds,
                         images_per_s=len(x) / seconds, **latency(dev, model, x[:1], repeats))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("/out"))
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    spec = json.loads(a.jobs.read_text())
    pixels, labels = fashion.load_npz(TOP / spec["test"])
    with pyaccel.open() as dev:
        for job in spec["runs"]:
            t0 = time.monotonic()
            try:
                r = evaluate(dev, TOP / job["dir"], pixels, labels, a.repeats)
            except Exception as e:      # one broken run must not hide the others
                r = dict(error=f"{type(e).__name__}: {e}")
            r.update(id=job["id"], n_test=len(labels), seconds=time.monotonic() - t0)
            (a.out / f"{job['id']}.json").write_text(json.dumps(r) + "\n")
            msg = r.get("error") or (f"float {100 * r['float']['accuracy']:.2f}%, int8 "
                                     f"{100 * r['int8']['accuracy']:.2f}%")
            print(f"[guest] {job['id']}: {msg} ({r['seconds']:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
