"""Reproducibility: train runs again and compare their weights bit for bit.

    $(scripts/venv.sh bench/requirements.txt) study/verify.py RUN_ID [RUN_ID ...]

Each run (e.g. depth3-full2-s0) is trained again by train.train_one into a
temporary folder and its exported float32 weights are compared, array by
array and bit for bit, with the cached run's (build/study/runs/). The file
bytes may differ (npz archives carry timestamps); the arrays may not.
Exits 1 if any array differs or a run is not in the cache.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import train  # noqa: E402
import zoo  # noqa: E402


def content_hash(path: Path) -> str:
    """sha256 over the npz's arrays (sorted names, dtype, shape, bytes)."""
    h = hashlib.sha256()
    with np.load(path) as z:
        for k in sorted(z.files):
            a = z[k]
            h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    by_id = {r.id: r for r in zoo.runs()}
    bad = 0
    for rid in a.runs:
        run = by_id[rid]
        cached = train.run_dir(run) / "float.npz"
        if not cached.exists():
            print(f"{rid}: not trained yet (run make study)")
            bad += 1
            continue
        with tempfile.TemporaryDirectory() as tmp:
            train.RUNS = Path(tmp)
            train.train_one(run)
            again = train.run_dir(run) / "float.npz"
            h1, h2 = content_hash(cached), content_hash(again)
        ok = h1 == h2
        bad += not ok
        print(f"{rid}: weights {'identical' if ok else 'DIFFER'} (content sha256 {h1[:16]}"
              f"{'' if ok else ' vs ' + h2[:16]})", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
