"""Host-side pytest: builds what is missing, boots the board, and turns every
in-guest test (tests/guest) into a host test item of tests/host/test_guest.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "scripts"))
sys.path.insert(0, str(TOP))
import board  # noqa: E402

RUNS = board.BUILD / "test-runs"
# Boots use the kernel make's KERNEL= picks ($PYACCEL_KERNEL; 6.1 by default);
# board.run scales every timeout by that kernel's factor (debug: 4x).
GUEST_TIMEOUT = float(os.environ.get("PYACCEL_GUEST_TIMEOUT", 1200))
_built = False


def pytest_report_header(config):
    k = board.guest_kernel()
    return f"guest kernel: {k.name} ({k.image}), timeouts x{k.timeout_scale:g}"


def ensure_built() -> None:
    """Build or fetch every board artifact once per session (quick when cached)."""
    global _built
    if not _built:
        proc = subprocess.run(["bash", str(TOP / "scripts" / "build-all.sh")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"building the board failed:\n{proc.stderr[-4000:]}", pytrace=False)
        _built = True


@pytest.fixture(scope="session")
def built() -> None:
    ensure_built()


def boot(name: str, command: str, **kw) -> board.RunResult:
    """Boot the board for one host test; its console and dmesg stay in build/test-runs/."""
    ensure_built()
    return board.run(command, out_dir=RUNS / name, **kw)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --- the in-guest suite as host items ------------------------------------------

@dataclass
class GuestCase:
    name: str
    outcome: str        # passed, failed, skipped
    message: str
    details: str


def parse_junit(path: Path) -> list[GuestCase]:
    cases = []
    for tc in ET.parse(path).getroot().iter("testcase"):
        module = tc.get("classname", "").removeprefix("tests.guest.")
        name = f"{module}::{tc.get('name')}"
        outcome, message, details = "passed", "", ""
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                message = el.get("message", "")
                details = el.text or ""
                break
        for tag in ("system-out", "system-err"):
            el = tc.find(tag)
            if el is not None and el.text and outcome == "failed":
                details += f"\n--- guest {tag} ---\n{el.text}"
        cases.append(GuestCase(name, outcome, message, details))
    return cases


class GuestFailure(Exception):
    pass


class GuestTest(pytest.Item):
    def __init__(self, *, case: GuestCase, **kw) -> None:
        super().__init__(**kw)
        self.case = case

    def runtest(self) -> None:
        if self.case.outcome == "skipped":
            pytest.skip(f"in the guest: {self.case.message}")
        if self.case.outcome == "failed":
            raise GuestFailure(f"{self.case.message}\n{self.case.details}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GuestFailure):
            return f"in-guest test failed:\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"guest: {self.name}"


class BoardCheck(pytest.Item):
    """Fails when the boot itself went wrong: no report, QEMU crash, kernel BUG/WARN."""

    def __init__(self, *, problems: list[str], evidence: str, **kw) -> None:
        super().__init__(**kw)
        self.problems = problems
        self.evidence = evidence

    def runtest(self) -> None:
        if self.problems:
            raise GuestFailure("\n".join(self.problems) + "\n" + self.evidence)

    def repr_failure(self, excinfo, style=None):
        return str(excinfo.value)

    def reportinfo(self):
        return self.path, None, self.name


def export_for_guest() -> list[str]:
    """Write what guest tests read over the share before the board boots: the
    ONNX node tests (onnx_node_tests.py) and the zoo's ONNX models with
    onnxruntime's answers (guest_models.py). Returns the problems."""
    problems = []
    for mod in ("onnx_node_tests", "guest_models"):
        try:
            __import__(mod).export()
        except ImportError as e:
            problems.append(f"{mod}.export() needs {e.name}: the host test venv lacks it")
        except Exception as e:  # noqa: BLE001 - reported as the board check's failure
            problems.append(f"{mod}.export() failed: {type(e).__name__}: {e}")
    return problems


class GuestSuite(pytest.File):
    def collect(self):
        ensure_built()
        exported = export_for_guest()
        run_dir = RUNS / "guest-suite"
        junit = run_dir / "junit.xml"
        junit.unlink(missing_ok=True)
        cmd = ("python3 -m pytest -p no:cacheprovider -q -rfEs -o junit_logging=all "
               "--junitxml=/out/junit.xml tests/guest")
        r = board.run(cmd, out_dir=run_dir, timeout=GUEST_TIMEOUT)
        evidence = (f"saved: {run_dir}/console.log, {run_dir}/dmesg.txt\n"
                    f"--- console (last lines) ---\n{tail(r.console)}")
        cases = parse_junit(junit) if junit.exists() else []
        for case in cases:
            yield GuestTest.from_parent(self, name=case.name, case=case)
        problems = exported + list(r.problems)
        if not cases:
            problems.append("the guest suite produced no results")
        elif r.status not in (0, None) and not any(c.outcome == "failed" for c in cases):
            problems.append(f"guest pytest exited {r.status} without a failed test")
        yield BoardCheck.from_parent(self, name="board: clean boot, kernel log and QEMU exit",
                                     problems=problems, evidence=evidence)


def pytest_pycollect_makemodule(module_path, parent):
    if module_path.name == "test_guest.py":
        return GuestSuite.from_parent(parent, path=module_path)
    return None
