"""Commit a few trained runs for make test's fast check (tests/guest/test_study.py).

    $(scripts/venv.sh bench/requirements.txt) study/freeze.py [RUN_ID ...]

Copies the runs' float.npz and int8.npz from build/study/runs/ to
study/weights/<run>-{float,int8}.npz, writes study/fashion_test1000.npz
(the first 100 test images of each class, with their indices in the
10,000) and study/weights/manifest.json: per run, the host's float32
predictions on those 1,000 images (PyTorch, the run's record) and the int8
golden model's (pyaccel.reference_int8), their accuracy, params, MACs and
the sha256 of both files.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import fashion  # noqa: E402
import train  # noqa: E402
import zoo  # noqa: E402
from pyaccel.compiler.builder import GraphModel  # noqa: E402

DEFAULT = ("depth3-full2-s0", "depth5-full2-s0", "mlp1x200-s0")


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", default=list(DEFAULT))
    a = ap.parse_args()
    x_te, y_te = fashion.load("test")
    idx = fashion.test_subset_indices(y_te)
    fashion.save(fashion.TEST_SUBSET, x_te[idx], y_te[idx], index=idx.astype(np.int16))
    by_id = {r.id: r for r in zoo.runs()}
    zoo.WEIGHTS.mkdir(exist_ok=True)
    nets = {}
    for rid in a.runs:
        run = by_id[rid]
        src = train.run_dir(run)
        rec = json.loads((src / "record.json").read_text())
        entry = dict(spec=run.spec.name, seed=run.seed, params=rec["params"], macs=rec["macs"],
                     full_test_host_accuracy=rec["host_accuracy"], n_train=rec["n_train"],
                     epochs=rec["epochs"])
        for kind in ("float", "int8"):
            dst = zoo.WEIGHTS / f"{rid}-{kind}.npz"
            shutil.copy(src / f"{kind}.npz", dst)
            entry[f"{kind}_weights"] = str(dst.relative_to(zoo.TOP))
            entry[f"{kind}_sha256"] = sha(dst)
            loaded = GraphModel.load(dst)          # folded: no batch-norm parameters
            entry[f"{kind}_params"], entry[f"{kind}_macs"] = loaded.params, loaded.macs
        host = np.array([int(c) for c in rec["host_predictions"]])[idx]
        qm = GraphModel.load(zoo.WEIGHTS / f"{rid}-int8.npz")
        golden = qm.reference(train.as_input(x_te[idx], qm.input_shape)).argmax(1)
        entry.update(host_predictions="".join(map(str, host)),
                     host_correct=int((host == y_te[idx]).sum()),
                     golden_int8_predictions="".join(map(str, golden)),
                     golden_int8_correct=int((golden == y_te[idx]).sum()))
        nets[rid] = entry
        print(f"{rid}: host {entry['host_correct']}/1000, int8 golden "
              f"{entry['golden_int8_correct']}/1000", flush=True)
    manifest = dict(test_file=str(fashion.TEST_SUBSET.relative_to(zoo.TOP)), n_test=len(idx),
                    code=train.CODE, networks=nets)
    zoo.MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    size = sum(p.stat().st_size for p in zoo.WEIGHTS.glob("*.npz"))
    print(f"wrote {zoo.MANIFEST.relative_to(zoo.TOP)}; committed weights {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
