"""`make study`, step 2 (guest half): every trained network's test-split
inference on the device, through pyaccel. Runs inside the board.

    python3 study/guest_eval.py [--json /out/study.json] [--repeats N]

Per network with weights on disk (study/weights/manifest.json names them):
the device's predictions on the whole test split (batches of BATCH; their
wall time gives the throughput) and batch-1 latency: e2e around the
CompiledModel call, the driver's submit-to-completion, the device's compute
and the modelled silicon's cycles.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import digits  # noqa: E402
import zoo  # noqa: E402
import pyaccel  # noqa: E402
from pyaccel.graph import Model  # noqa: E402

BATCH = 120


def device_predictions(dev: pyaccel.Device, model: Model, pixels: np.ndarray,
                       batch: int = BATCH) -> np.ndarray:
    """Class predictions of uint8 images (N, H, W) on the device; the last
    batch is padded with zeros (their predictions are dropped)."""
    x = digits.to_input(pixels)
    preds = []
    with model.compile(dev, batch) as net:
        for i in range(0, len(x), batch):
            chunk = x[i:i + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:],
                                                        np.float32)])
            preds.append(net(chunk).output.argmax(axis=1))
    return np.concatenate(preds)[:len(x)]


def load(spec: zoo.Spec, path: Path) -> Model:
    model = spec.build()
    model.load_npz(path)
    return model


def latency(dev: pyaccel.Device, model: Model, image: np.ndarray, repeats: int) -> dict:
    """Batch-1 inference: medians (and p10/p90 of e2e) over `repeats` calls."""
    x = digits.to_input(image[None])
    with model.compile(dev) as net:
        for _ in range(3):
            net(x)
        wall, infs = [], []
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            infs.append(net(x))
            wall.append(time.perf_counter_ns() - t0)
    ms = np.array(wall) / 1e6
    return dict(e2e_ms=float(np.median(ms)), e2e_p10_ms=float(np.percentile(ms, 10)),
                e2e_p90_ms=float(np.percentile(ms, 90)),
                driver_ms=float(np.median([i.job.latency_ns for i in infs])) / 1e6,
                device_ms=float(np.median([i.job.device_ns for i in infs])) / 1e6,
                cycles=infs[-1].job.cycles, modelled_ms=infs[-1].modelled_ms)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path("/out/study.json"))
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    pixels, labels = digits.load_test()
    manifest = zoo.manifest()
    out: dict = dict(n_test=len(labels), batch=BATCH, repeats=a.repeats, networks={})
    with pyaccel.open() as dev:
        for name, entry in manifest["networks"].items():
            path = zoo.TOP / entry["weights"]
            if not path.exists():
                print(f"[guest] {name}: no weights ({entry['weights']}): skipped", flush=True)
                continue
            model = load(zoo.by_name()[name], path)
            t0 = time.perf_counter_ns()
            preds = device_predictions(dev, model, pixels)
            seconds = (time.perf_counter_ns() - t0) / 1e9
            host = np.array([int(c) for c in entry["host_predictions"]])
            r = dict(device_correct=int((preds == labels).sum()),
                     device_accuracy=float((preds == labels).mean()),
                     differs_from_host=int((preds != host).sum()),
                     test_split_s=seconds, images_per_s=len(labels) / seconds,
                     **latency(dev, model, pixels[0], a.repeats))
            out["networks"][name] = r
            print(f"[guest] {name}: accuracy {100 * r['device_accuracy']:.2f}%, "
                  f"{r['differs_from_host']} predictions differ from the host's, "
                  f"e2e {r['e2e_ms']:.2f} ms", flush=True)
            a.json.write_text(json.dumps(out, indent=1) + "\n")
    a.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
