"""`make study`, step 2 (guest half): trained runs on the device, float32 and
int8, through pyaccel's compiler and the real driver. Runs inside the board.

    python3 study/guest_eval.py --jobs build/study/eval/jobs.json --out /out [--repeats N]

jobs.json: {"test": <npz of the test images, relative to the repo>,
"runs": [{"id", "dir"}, ...]}, each dir holding float.npz and int8.npz
(GraphModel.save / QuantizedModel.save). Per run, written at once to
OUT/<id>.json (a run cut short keeps the finished ones): the device's
predictions on every test image for float32 and for int8 (batches of up
to BATCH, fewer where a batch's device time would near the driver's job
timeout), and batch-1
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
JOB_BUDGET_S = 0.2          # a batch's device time, well inside the driver's 2 s job timeout


def device_predictions(dev, model, x: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Class predictions of inputs x (N, ...) on the device; the last batch is
    padded with zeros (their predictions are dropped). A batch that runs into
    the driver's job timeout (a loaded host slows the emulated device) is
    retried, all of it, at half the batch."""
    while True:
        try:
            return _predictions(dev, model, x, batch)
        except pyaccel.JobError as e:
            if e.result.status != "timeout" or batch == 1:
                raise
            batch = max(1, batch // 2)
            print(f"[guest] job timeout: batch {batch} now", flush=True)


def _predictions(dev, model, x: np.ndarray, batch: int) -> np.ndarray:
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


def batch_for(dev, model, x: np.ndarray, batch1_ms: float) -> int:
    """The largest batch (up to BATCH) whose device time stays within
    JOB_BUDGET_S, from the device times of batch 1 (measured by latency())
    and batch 8: a job's fixed cost (weights read and packed once a job)
    does not grow with the batch."""
    with model.compile(dev, 8) as net:
        net(x[:8])
        t8 = min(net(x[:8]).device_ns for _ in range(2)) / 1e9
    t1 = batch1_ms / 1e3
    per_image = max((t8 - t1) / 7, 1e-6)
    fixed = max(t1 - per_image, 0.0)
    return max(1, min(BATCH, int((JOB_BUDGET_S - fixed) / per_image)))


def evaluate(dev, run_dir: Path, pixels: np.ndarray, labels: np.ndarray,
             repeats: int) -> dict:
    """float32 and int8 on every test image."""
    out: dict = {}
    for kind in ("float", "int8"):
        model = GraphModel.load(run_dir / f"{kind}.npz")
        n = len(pixels)
        x = as_input(pixels[:n], model)
        lat = latency(dev, model, x[:1], repeats)
        batch = batch_for(dev, model, x, lat["device_ms"])
        t0 = time.perf_counter_ns()
        preds = device_predictions(dev, model, x, batch)
        seconds = (time.perf_counter_ns() - t0) / 1e9
        out[kind] = dict(n=n, batch=batch, correct=int((preds == labels[:n]).sum()),
                         accuracy=float((preds == labels[:n]).mean()),
                         predictions="".join(map(str, preds)), test_s=seconds,
                         images_per_s=n / seconds, **lat)
    fp = np.array([int(c) for c in out["float"]["predictions"][:out["int8"]["n"]]])
    out["int8"]["float_correct_same_images"] = int((fp == labels[:out["int8"]["n"]]).sum())
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
