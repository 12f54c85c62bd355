"""`make lint` as a test: kernel/lint.sh (checkpatch --strict, kernel-doc and
sparse over the driver and its headers) must report nothing."""
from __future__ import annotations

import subprocess
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]


def test_lint_clean() -> None:
    proc = subprocess.run(["bash", str(TOP / "kernel" / "lint.sh")], cwd=TOP,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (
        f"kernel/lint.sh exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-4000:]}")
