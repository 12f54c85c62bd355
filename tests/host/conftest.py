"""Host-side pytest: builds what is missing, boots the board, and turns every
in-guest test (tests/guest) into a host test item of tests/host/test_guest.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
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


class GuestRun:
    """The in-guest suite, booted in a background thread as soon as the host
    collects it, so that the host tests run meanwhile (they run first; the
    guest items wait for the boot at the end of the session)."""

    def __init__(self) -> None:
        self.dir = RUNS / "guest-suite"
        self.thread: threading.Thread | None = None
        self.result: board.RunResult | None = None
        self.error = ""
        self.cases: dict[str, GuestCase] = {}

    def start(self) -> None:
        junit = self.dir / "junit.xml"
        junit.unlink(missing_ok=True)
        cmd = ("python3 -m pytest -p no:cacheprovider -q -rfEs -o junit_logging=all "
               "--junitxml=/out/junit.xml tests/guest")

        def boot() -> None:
            try:
                self.result = board.run(cmd, out_dir=self.dir, timeout=GUEST_TIMEOUT)
            except Exception as e:  # noqa: BLE001 - reported by the board check
                self.error = f"booting the guest suite failed: {type(e).__name__}: {e}"
            if junit.exists():
                self.cases = {c.name: c for c in parse_junit(junit)}

        self.thread = threading.Thread(target=boot, name="guest-suite", daemon=True)
        self.thread.start()

    def wait(self) -> "GuestRun":
        if self.thread is not None:
            self.thread.join()
        return self


GUEST = GuestRun()


def guest_names() -> tuple[list[str], str]:
    """The guest suite's test names (module::test[id]), collected on the host
    (the same files and manifests the guest reads), and any collection error."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                        "-p", "no:cacheprovider", "tests/guest"],
                       capture_output=True, text=True, cwd=TOP)
    names = [line.strip().removeprefix("tests/guest/").replace(".py::", "::", 1)
             for line in r.stdout.splitlines() if line.startswith("tests/guest/")]
    err = "" if r.returncode == 0 else f"collecting tests/guest on the host failed:\n" \
        f"{tail(r.stdout + r.stderr, 30)}"
    return names, err


class GuestTest(pytest.Item):
    def runtest(self) -> None:
        case = GUEST.wait().cases.get(self.name)
        if case is None:
            raise GuestFailure(f"the guest reported no result for {self.name} (see "
                               f"{GUEST.dir}/console.log)")
        if case.outcome == "skipped":
            pytest.skip(f"in the guest: {case.message}")
        if case.outcome == "failed":
            raise GuestFailure(f"{case.message}\n{case.details}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GuestFailure):
            return f"in-guest test failed:\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"guest: {self.name}"


class BoardCheck(pytest.Item):
    """Fails when the boot itself went wrong: no report, QEMU crash, kernel BUG/WARN,
    a guest test the host did not know of."""

    def __init__(self, *, problems: list[str], names: list[str], **kw) -> None:
        super().__init__(**kw)
        self.problems = problems
        self.names = names

    def runtest(self) -> None:
        g = GUEST.wait()
        r = g.result
        problems = list(self.problems) + ([g.error] if g.error else [])
        if r is not None:
            problems += list(r.problems)
            if not g.cases:
                problems.append("the guest suite produced no results")
            elif r.status not in (0, None) and not any(c.outcome == "failed"
                                                       for c in g.cases.values()):
                problems.append(f"guest pytest exited {r.status} without a failed test")
        extra = sorted(set(g.cases) - set(self.names))
        if extra:
            problems.append(f"the guest ran {len(extra)} test(s) the host did not collect: "
                            f"{', '.join(extra[:5])}")
        if problems:
            console = tail(r.console) if r is not None else ""
            raise GuestFailure("\n".join(problems) + f"\nsaved: {g.dir}/console.log, "
                               f"{g.dir}/dmesg.txt\n--- console (last lines) ---\n{console}")

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
        problems = export_for_guest()
        names, err = guest_names()
        problems += [err] if err else []
        GUEST.start()
        for name in names:
            yield GuestTest.from_parent(self, name=name)
        yield BoardCheck.from_parent(self, name="board: clean boot, kernel log and QEMU exit",
                                     problems=problems, names=names)


def pytest_collection_modifyitems(session, config, items):
    """Host tests first (the guest suite boots meanwhile), then the guest's
    items and the modules that read its results."""
    late = ("test_guest.py", "test_onnx_nodes.py")
    items.sort(key=lambda i: i.path.name in late)


def pytest_pycollect_makemodule(module_path, parent):
    if module_path.name == "test_guest.py":
        return GuestSuite.from_parent(parent, path=module_path)
    return None
