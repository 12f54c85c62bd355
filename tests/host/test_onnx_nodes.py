"""The ONNX backend node tests of pyaccel.onnx's operators, on the device.

At collection this exports them (tests/host/onnx_node_tests.py: cached in
build/onnx-node-tests/, keyed by the onnx version, the exporter and
pyaccel/onnx.py), then the guest runs tests/guest/test_onnx_nodes.py on the
emulated device. Each node test is one item here with the guest's outcome:
passed, failed (with the guest's assertion) or skipped (with the reason).

The main guest suite (test_guest.py, booted in the background while the host
tests run; conftest.GUEST) exports the node tests before it boots: its
results are taken as they are when its run used this export (the guest test
test_manifest_key[<key>] is among them); otherwise (only this file was asked
for) this module boots the board once for the node tests alone. test_summary prints passed / loaded per operator.
"""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx")
import conftest  # noqa: E402 - tests/host/conftest.py: boot(), parse_junit(), RUNS
import onnx_node_tests  # noqa: E402

MANIFEST = onnx_node_tests.export()
TESTS = sorted(MANIFEST["tests"])
GUEST_FILE = "tests/guest/test_onnx_nodes.py"
KEY_TEST = f"test_onnx_nodes::test_manifest_key[{MANIFEST['key']}]"


def _cases(junit: Path) -> dict:
    return {c.name: c for c in conftest.parse_junit(junit)
            if c.name.startswith("test_onnx_nodes::")}


@pytest.fixture(scope="module")
def guest():
    """{guest test name: GuestCase}, the run's folder, its boot problems."""
    main = conftest.GUEST.wait()            # the main suite, if this session booted it
    if main.thread is not None:
        cases = {n: c for n, c in main.cases.items() if n.startswith("test_onnx_nodes::")}
        if KEY_TEST in cases:
            return cases, main.dir, []
    run_dir = conftest.RUNS / "onnx-nodes"
    junit = run_dir / "junit.xml"
    junit.unlink(missing_ok=True)
    cmd = ("python3 -m pytest -p no:cacheprovider -q -rfEs -o junit_logging=all "
           f"--junitxml=/out/junit.xml {GUEST_FILE}")
    r = conftest.boot("onnx-nodes", cmd, timeout=conftest.GUEST_TIMEOUT)
    problems = list(r.problems)
    if not junit.exists():
        problems.append(f"the guest produced no results; console:\n{conftest.tail(r.console)}")
        return {}, run_dir, problems
    return _cases(junit), run_dir, problems


def test_board(guest):
    """The boot that ran the node tests was clean (or the main suite's was)."""
    _, run_dir, problems = guest
    assert not problems, "\n".join(problems) + f"\n(saved in {run_dir})"


def test_export_key(guest):
    cases, _, _ = guest
    assert KEY_TEST in cases, f"the guest did not run export {MANIFEST['key']}"


@pytest.mark.parametrize("name", TESTS)
def test_node(guest, name):
    cases, run_dir, _ = guest
    case = cases.get(f"test_onnx_nodes::test_node[{name}]")
    if case is None:
        pytest.fail(f"no guest result for {name} (see {run_dir})")
    if case.outcome == "skipped":
        pytest.skip(case.message)
    if case.outcome == "failed":
        pytest.fail(f"in the guest: {case.message}\n{case.details}", pytrace=False)


def test_summary(guest, request):
    """passed / loaded per operator (the guest's table), on the terminal."""
    _, run_dir, _ = guest
    f = run_dir / "onnx-node-summary.txt"
    assert f.exists(), f"no {f}"
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line("")
        tr.write_line(f"ONNX node tests on the device ({len(TESTS)} tests, onnx "
                      f"{MANIFEST['onnx']}):")
        for line in f.read_text().splitlines():
            tr.write_line("  " + line)
