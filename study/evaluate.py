"""`make study`, step 2: trained runs on the device, against the host.

    $(scripts/venv.sh bench/requirements.txt) study/evaluate.py [--max-runs N] [--timeout S]
        [--guidelines] [--collect]

Boots the board once for every trained run (build/study/runs/*/record.json)
that has no device.json yet: study/guest_eval.py runs the 10,000 test
images through each float32 and int8 network on the device; the result of
each run is stored next to its weights as device.json (so an interrupted
evaluation resumes where it stopped; --collect stores what an interrupted
boot had finished). The first boot also runs
study/guidelines.py (claim 9) into build/study/guidelines.json.
Prints, per run, whether the device's float32 predictions equal the host's.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
sys.path[:0] = [str(HERE), str(TOP / "scripts")]
import board  # noqa: E402
import fashion  # noqa: E402
import train  # noqa: E402

STUDY = TOP / "build" / "study"
TEST_NPZ = STUDY / "fashion_test.npz"
EVAL = STUDY / "eval"
GUIDELINES = STUDY / "guidelines.json"


def trained_runs() -> list[Path]:
    return sorted(p.parent for p in train.RUNS.glob("*/record.json"))


def current(run_dir: Path) -> bool:
    """Whether the run has a device result of today's guest_eval.py: float32
    and int8 on every test image (older results ran int8 on 2,000)."""
    f = run_dir / "device.json"
    if not f.exists():
        return False
    res = json.loads(f.read_text())
    return "error" not in res and res["int8"]["n"] == res["n_test"] == res["float"]["n"]


def pending() -> list[Path]:
    return [d for d in trained_runs() if not current(d)]


def write_test_file() -> None:
    if not TEST_NPZ.exists():
        x, y = fashion.load("test")
        fashion.save(TEST_NPZ, x, y)


def boot(dirs: list[Path], guidelines: bool, timeout: float, say=print) -> int:
    """One boot: evaluate `dirs` (and claim 9); store what came back. Returns
    how many runs got a device.json."""
    write_test_file()
    EVAL.mkdir(parents=True, exist_ok=True)
    out = EVAL / "out"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    ids = {d.name: d for d in dirs}
    jobs = dict(test=str(TEST_NPZ.relative_to(TOP)),
                runs=[dict(id=name, dir=str(d.relative_to(TOP))) for name, d in ids.items()])
    (EVAL / "jobs.json").write_text(json.dumps(jobs, indent=1) + "\n")
    cmd = []
    if guidelines:
        cmd.append("python3 study/guidelines.py --json /out/guidelines.json")
    if dirs:
        cmd.append(f"python3 study/guest_eval.py --jobs {(EVAL / 'jobs.json').relative_to(TOP)}"
                   " --out /out")
    t0 = time.monotonic()
    r = board.run(" && ".join(cmd), out_dir=out, timeout=timeout, echo=False)
    got = collect(say)
    if guidelines and (out / "guidelines.json").exists():
        shutil.copy(out / "guidelines.json", GUIDELINES)
    say(f"evaluate: boot of {len(dirs)} runs took {time.monotonic() - t0:.0f} s, "
        f"{got} evaluated; guest status {r.status}"
        + (f"; problems: {r.problems}; console in {out}/console.log" if not r.ok else ""))
    return got


def collect(say=print) -> int:
    """Store the results the guest has written so far into their runs'
    folders (also those of a boot cut short); returns how many."""
    out, got = EVAL / "out", 0
    jobs = EVAL / "jobs.json"
    if not jobs.exists():
        return 0
    for job in json.loads(jobs.read_text())["runs"]:
        f, d = out / f"{job['id']}.json", TOP / job["dir"]
        if not f.exists() or current(d):
            continue
        res = json.loads(f.read_text())
        if "error" in res:
            say(f"evaluate: {job['id']}: the guest failed: {res['error']}")
            continue
        shutil.copy(f, d / "device.json")
        got += 1
    return got


def evaluate_pending(max_runs: int = 40, timeout: float = 3600, say=print,
                     guidelines: bool = False) -> int:
    """Evaluate every pending run, max_runs per boot (and claim 9 if it has
    no result yet, or if `guidelines`); returns how many runs."""
    total = 0
    need_g = guidelines or not GUIDELINES.exists()
    while True:
        todo = pending()[:max_runs]
        if not todo and not need_g:
            return total
        got = boot(todo, need_g, timeout, say)
        need_g = False
        total += got
        if todo and not got:
            say("evaluate: no run came back from the guest; stopping")
            return total


def check(say=print) -> list[str]:
    """Runs whose device float32 predictions differ from the host's."""
    bad = []
    for d in trained_runs():
        dev = d / "device.json"
        if not dev.exists():
            continue
        rec, res = json.loads((d / "record.json").read_text()), json.loads(dev.read_text())
        diff = sum(a != b for a, b in zip(rec["host_predictions"], res["float"]["predictions"]))
        if diff or rec["host_correct"] != res["float"]["correct"]:
            bad.append(f"{rec['run']}: {diff} predictions differ")
    for b in bad:
        say(f"evaluate: device != host: {b}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-runs", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--guidelines", action="store_true", help="run claim 9 again")
    ap.add_argument("--collect", action="store_true",
                    help="only store what the last (perhaps interrupted) boot wrote")
    a = ap.parse_args()
    if a.collect:
        print(f"evaluate: collected {collect()} results")
    else:
        evaluate_pending(a.max_runs, a.timeout, guidelines=a.guidelines)
    return 1 if check() else 0


if __name__ == "__main__":
    sys.exit(main())
