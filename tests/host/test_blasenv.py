"""OpenBLAS's kernel choice for the device (cvc_blas_core, cvc_blas_better_core
in qemu/compute/convaccel_compute.h; scripts/blasenv.py).

OpenBLAS's detection falls back to Prescott (SSE3) kernels on CPU models it
does not know: a previous session's AVX-512 host ran the device's SGEMMs
that way (bench/results.json of stop 12: "openblas_core": "Prescott"), at
a fraction of the speed. The fallback is simulated here by loading OpenBLAS
with OPENBLAS_CORETYPE=Prescott and unsetting the variable afterwards: the
library must then name the core the CPU can run, from /proc/cpuinfo.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "scripts"))
import blasenv  # noqa: E402

PROBE = r"""
import ctypes, os, sys
lib = ctypes.CDLL(sys.argv[1])
if sys.argv[2] == "unset":
    del os.environ["OPENBLAS_CORETYPE"]
lib.cvc_blas_core.restype = lib.cvc_blas_better_core.restype = ctypes.c_char_p
print(lib.cvc_blas_core().decode(), (lib.cvc_blas_better_core() or b"-").decode())
"""


@pytest.fixture(scope="module")
def library() -> Path:
    proc = subprocess.run(["bash", str(TOP / "qemu" / "compute" / "build.sh")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"building the compute library failed:\n{proc.stderr[-4000:]}",
                    pytrace=False)
    return Path(proc.stdout.strip())


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def expected_core() -> str:
    """What an AVX2 or AVX-512 CPU should run instead of a fallback ("-": nothing)."""
    flags = cpu_flags()
    if not {"avx2", "fma"} <= flags:
        return "-"
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "SkylakeX"
    return "Haswell"


def probe(library: Path, coretype: str, after: str) -> list[str]:
    env = dict(os.environ, OPENBLAS_CORETYPE=coretype)
    out = subprocess.run([sys.executable, "-c", PROBE, str(library), after], env=env,
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_a_fallback_to_prescott_names_the_core_the_cpu_runs(library: Path) -> None:
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        pytest.skip("the check is for x86_64 hosts")
    assert probe(library, "Prescott", "unset") == ["Prescott", expected_core()]


def test_a_core_the_user_chose_is_left_alone(library: Path) -> None:
    assert probe(library, "Prescott", "keep") == ["Prescott", "-"]


def test_a_modern_core_is_left_alone(library: Path) -> None:
    core, better = probe(library, "Haswell", "unset")
    assert (core, better) == ("Haswell", "-")


def test_blasenv_gives_qemu_what_the_library_says(library: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    blasenv.coretype.cache_clear()
    detected, better = blasenv.probe(library)
    env = blasenv.environ(library)
    assert env.get("OPENBLAS_CORETYPE") == (better or None)
    assert detected and detected != "Prescott" or better == expected_core()
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    blasenv.coretype.cache_clear()
    assert blasenv.environ(library)["OPENBLAS_CORETYPE"] == "Haswell"
    blasenv.coretype.cache_clear()
