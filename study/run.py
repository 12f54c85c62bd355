"""`make study`: train, evaluate on the device, report; phase by phase.

    $(scripts/venv.sh bench/requirements.txt) study/run.py [--phase N ...] [--jobs 2]

Phase by phase (zoo.Spec.phase: 1 the cheap families, 2 the residual
networks, 3 the allconv width variants and matched convnets, 4 MobileNet-v1): train the phase's runs
that are not in the cache (train.py, --jobs processes), evaluate every
trained run without a device result on the board (evaluate.py), then
regenerate results.json, study/README.md's sections and the figures
(report.py, which says "not yet run" for what is missing). Interrupt it at
any time: finished runs and device results are kept, and the next
`make study` carries on from there. Progress and ETA: build/study/train.log.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]
import evaluate  # noqa: E402
import train  # noqa: E402
import zoo  # noqa: E402

LOG = zoo.TOP / "build" / "study" / "train.log"
TIMING = zoo.TOP / "build" / "study" / "timing.json"


def say(msg: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    print(line, flush=True)
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(LOG, "a") as f:
        f.write(line + "\n")


def report() -> int:
    """report.py in its own process (a failing report never loses a result)."""
    return subprocess.call([sys.executable, str(HERE / "report.py")])


def past_invocations(fresh: bool) -> list[dict]:
    """The earlier invocations of this study (build/study/timing.json), none
    when it starts from nothing: the study's time is their sum."""
    if fresh or not TIMING.exists():
        return []
    return json.loads(TIMING.read_text()).get("invocations", [])


def save_timing(invocations: list[dict]) -> None:
    TIMING.parent.mkdir(parents=True, exist_ok=True)
    TIMING.write_text(json.dumps(dict(invocations=invocations), indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", type=int, nargs="*")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-device", action="store_true", help="train and report only")
    a = ap.parse_args()
    if not a.no_device:
        try:                # the board is needed after the first phase: say so now
            evaluate.board.build_dtb(1)
        except evaluate.board.BoardError as e:
            print(f"study: {e}", file=sys.stderr)
            return 2
    t0 = time.monotonic()
    phases = a.phase or sorted({s.phase for s in zoo.SPECS})
    left = {p: [r for r in train.select([p]) if not train.done(r)] for p in phases}
    total = sum(train.cost(r) for rs in left.values() for r in rs) or 1.0
    say(f"study: {sum(map(len, left.values()))} runs to train in phases {phases}")
    failed, spent, timing = 0, 0.0, dict(started=time.strftime("%Y-%m-%d %H:%M:%S"),
                                         jobs=a.jobs, phases={})
    invocations = past_invocations(fresh=all(not train.done(r) for r in train.select(phases)))
    for phase in phases:
        todo = left[phase]
        el = time.monotonic() - t0
        eta = f", whole study ETA {train.fmt(el * (total - spent) / spent)}" if spent else ""
        say(f"study: phase {phase}: {len(todo)} runs to train{eta}")
        tp = time.monotonic()
        failed += train.train_all(todo, a.jobs, LOG)
        spent += sum(train.cost(r) for r in todo)
        te = time.monotonic()

        def record() -> None:
            timing["phases"][phase] = dict(runs=len(todo), train_s=round(te - tp),
                                           evaluate_s=round(time.monotonic() - te))
            timing["wall_s"] = round(time.monotonic() - t0)
            save_timing(invocations + [timing])

        record()                # the training is recorded even if evaluation fails
        if not a.no_device:
            evaluate.evaluate_pending(say=say)
        record()
        report()
    bad = evaluate.check(say=say)
    say(f"study: done in {train.fmt(time.monotonic() - t0)}; {failed} runs failed, "
        f"{len(bad)} differ between the device and the host")
    return 1 if failed or bad else 0

if __name__ == "__main__":
    sys.exit(main())
