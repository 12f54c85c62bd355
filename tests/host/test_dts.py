"""dt-schema checks: the qemu,convaccel binding, its example and the boot trees.

Gotchas: dt-validate always exits 0, and dt-doc-validate exits 0 on some
errors (e.g. a $id that does not match the file's path): look at what they
report, never only at the exit status. A node that no schema matches is not
an error unless dt-validate is given -m.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import libfdt  # pylibfdt, a dependency of dtschema
import pytest

TOP = Path(__file__).resolve().parents[2]
BINDING = TOP / "dts" / "qemu,convaccel.yaml"
COMPATIBLE = "qemu,convaccel"
VENV_BIN = Path(sys.executable).parent
# The wrapper dt-extract-example puts around an example triggers these.
EXAMPLE_DTC_FLAGS = ["-Wno-avoid_unnecessary_addr_size", "-Wno-interrupt_provider"]


def tool(name: str) -> str:
    """A dtschema tool next to this Python, else dtc/cpp from PATH."""
    path = VENV_BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found (in {VENV_BIN} or on PATH): install dtschema "
                    "from tests/requirements.txt (scripts/venv.sh) and dtc/cpp")
    return found


def run(*args: str | Path, cwd: Path = TOP) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output if it exits non-zero."""
    cmd = [str(a) for a in args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def dt_bindings_include() -> Path:
    """The include dir holding Linux's dt-bindings/ headers (guest kernel headers)."""
    kernel = Path(run("bash", "guest/kernel.sh").stdout.strip())
    dirs = sorted(kernel.glob("root/usr/src/linux-headers-*-common/include"))
    if not dirs or not (dirs[0] / "dt-bindings").is_dir():
        pytest.fail(f"no linux-headers-*-common/include/dt-bindings under {kernel}")
    return dirs[0]


def board_dtb(accels: int) -> Path:
    """build/board-N.dtb, built by scripts/board.py if it is missing."""
    dtb = TOP / "build" / f"board-{accels}.dtb"
    if not dtb.exists():
        run(sys.executable, "scripts/board.py", "dtb", "--accels", str(accels))
    return dtb


def accel_nodes(fdt: libfdt.Fdt) -> list[int]:
    """Offsets of the nodes whose compatible list holds ours."""
    found, node, depth = [], 0, 0
    while node >= 0 and depth >= 0:  # next_node() leaves the root at depth -1
        compat = fdt.getprop(node, "compatible", quiet=(libfdt.NOTFOUND,))
        if not isinstance(compat, int) and COMPATIBLE in compat.as_stringlist():
            found.append(node)
        node, depth = fdt.next_node(node, depth, quiet=(libfdt.NOTFOUND,))
    return found


def accel_paths(dtb: Path) -> list[str]:
    fdt = libfdt.Fdt(dtb.read_bytes())
    return [fdt.get_path(n) for n in accel_nodes(fdt)]


def validate(dtb: Path, schema: Path) -> list[dict]:
    """dt-validate's diagnostics for a DTB (its exit status says nothing).

    -m also reports nodes that no schema matched: else a binding whose
    compatible differs from the tree's would silently check nothing.
    """
    out = dtb.with_suffix(".json")
    run(tool("dt-validate"), "-m", "-s", schema, "--json-output", out, dtb)
    return json.loads(out.read_text())


def errors_on(diagnostics: list[dict], paths: list[str] | None = None) -> list[str]:
    """The messages about the nodes at paths (None: about any node)."""
    return [d.get("formatted", d["message"]) for d in diagnostics
            if paths is None or d.get("node") in paths]


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The core schemas plus our binding, processed by dt-mk-schema."""
    out = tmp_path_factory.mktemp("schema") / "processed-schema.json"
    run(tool("dt-mk-schema"), "-j", "-o", out, BINDING)
    return out


def test_binding_matches_meta_schema() -> None:
    proc = run(tool("dt-doc-validate"), BINDING)
    assert proc.stderr == "", proc.stderr


def test_binding_example_validates(tmp_path: Path, schema: Path) -> None:
    src = tmp_path / "example.dts"
    src.write_text(run(tool("dt-extract-example"), BINDING).stdout)
    pre = tmp_path / "example.pre.dts"
    run(tool("cpp"), "-nostdinc", "-undef", "-D__DTS__", "-x", "assembler-with-cpp",
        "-I", dt_bindings_include(), "-o", pre, src)
    dtb = tmp_path / "example.dtb"
    dtc = run(tool("dtc"), *EXAMPLE_DTC_FLAGS, "-I", "dts", "-O", "dtb", "-o", dtb, pre)
    assert dtc.stderr == "", dtc.stderr
    assert len(accel_paths(dtb)) == 1
    assert errors_on(validate(dtb, schema)) == []


@pytest.mark.parametrize("accels", [1, 2])
def test_boot_tree_accels_validate(accels: int, tmp_path: Path, schema: Path) -> None:
    dtb = tmp_path / "board.dtb"  # a copy: dt-validate's output goes next to it
    shutil.copy(board_dtb(accels), dtb)
    paths = accel_paths(dtb)
    assert len(paths) == accels, paths
    # Only our nodes count: the core schemas flag parts of QEMU's own tree.
    assert errors_on(validate(dtb, schema), paths) == []


@pytest.mark.parametrize("breakage", ["no-interrupts", "unknown-property"])
def test_broken_accel_node_fails(breakage: str, tmp_path: Path, schema: Path) -> None:
    fdt = libfdt.Fdt(bytearray(board_dtb(1).read_bytes()))
    fdt.resize(fdt.totalsize() + 256)
    (node,) = accel_nodes(fdt)
    if breakage == "no-interrupts":
        fdt.delprop(node, "interrupts")
    else:
        fdt.setprop_u32(node, "unknown-property", 1)
    fdt.pack()
    dtb = tmp_path / "broken.dtb"
    dtb.write_bytes(fdt.as_bytearray())
    assert errors_on(validate(dtb, schema), accel_paths(dtb)), "broken node passed"
