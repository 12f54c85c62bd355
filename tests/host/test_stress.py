"""The short version of `make stress`: every must-be-zero figure is zero, and
the fuzzers did what they say (calls, checked steps)."""
import json
import subprocess
import sys

from conftest import TOP, ensure_built


def test_stress_short():
    ensure_built()
    r = subprocess.run([sys.executable, str(TOP / "tests/stress/stress.py"), "--short"],
                       capture_output=True, text=True, timeout=1800)
    print(r.stdout)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr[-3000:]}"
    results = json.loads((TOP / "build/test-runs/stress-short/results.json").read_text())
    fuzz = results["ioctl_fuzz"]
    assert fuzz["calls"] >= fuzz["target_calls"] or fuzz["fuzz_s"] >= fuzz["budget_s"]
    assert fuzz["events"]["epochs"] >= 2 and fuzz["errnos"]["ok"] > 0
    steps = results["device_fuzz"]["checked_steps"]
    for step in ("migrate_busy_completed", "migrate_idle_completed", "reset_races",
                 "limit_jobs"):
        assert steps.get(step), f"device fuzz: no {step} in {steps}"
