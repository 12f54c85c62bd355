"""The short version of `make stress`: every must-be-zero figure is zero."""
import subprocess
import sys

from conftest import TOP, ensure_built


def test_stress_short():
    ensure_built()
    r = subprocess.run([sys.executable, str(TOP / "tests/stress/stress.py"), "--short"],
                       capture_output=True, text=True, timeout=1800)
    print(r.stdout)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr[-3000:]}"
