"""The OpenBLAS environment for processes that run the device's kernels.

OpenBLAS picks its GEMM kernels once, when it loads: by CPU detection, or
as OPENBLAS_CORETYPE says. On a CPU model it does not know (newer ones,
some virtual CPUs) its detection falls back to Prescott, SSE3 kernels,
whatever the CPU's vector units: the device's float32 layers then run
2-3x slower on an AVX-512 host. The library says so itself
(cvc_blas_better_core in qemu/compute/convaccel_compute.h); this module
asks it once, in a child process (a process's OpenBLAS cannot change its
kernels after loading), and gives QEMU and the benchmark the core to use.
A user's own OPENBLAS_CORETYPE is left alone.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

_PROBE = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.cvc_blas_core.restype = lib.cvc_blas_better_core.restype = ctypes.c_char_p
better = lib.cvc_blas_better_core()
print(lib.cvc_blas_core().decode(), (better or b"").decode())
"""


@functools.cache
def probe(library: Path) -> tuple[str, str]:
    """(the core OpenBLAS detects, the core to set instead or "") for library
    (build/libconvaccel_compute.so), OPENBLAS_CORETYPE unset."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run([sys.executable, "-c", _PROBE, str(library)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], out[1] if len(out) > 1 else ""


@functools.cache
def coretype(library: Path) -> str | None:
    """The OPENBLAS_CORETYPE the device's process should have, or None for
    OpenBLAS's own choice (it suits the CPU, or the user set one)."""
    if "OPENBLAS_CORETYPE" in os.environ or not library.exists():
        return None
    detected, better = probe(library)
    if not better:
        return None
    print(f"[pyaccel] OpenBLAS detects {detected} kernels on this CPU, which has "
          f"AVX2/AVX-512: the device runs with OPENBLAS_CORETYPE={better}",
          file=sys.stderr, flush=True)
    return better


def environ(library: Path) -> dict[str, str]:
    """os.environ, with OPENBLAS_CORETYPE added when coretype() says so."""
    env = dict(os.environ)
    if core := coretype(library):
        env["OPENBLAS_CORETYPE"] = core
    return env
