"""A device whose limit registers lie (QEMU property fault-limit-value):
the driver sizes allocations and loops by QUEUE_DEPTH and MAX_LAYERS, so it
must believe them only up to its own constants (issue #10, defect 9)."""
from __future__ import annotations

from conftest import boot, tail

CHECK = r"""python3 - <<'EOF'
import errno, numpy as np, pyaccel
from pyaccel import Layer, Tensor
from pyaccel.uapi import ffi
d = pyaccel.open()
i = d.info
print("LIMITS", i.queue_depth, i.max_layers, i.max_kernel, i.max_dim, i.max_job_gmacs)
b = d.buffer(1 << 16)
t = lambda o: Tensor(b.handle, o)
geo = dict(n=1, c_in=1, h_in=2, w_in=2, c_out=1, h_out=2, w_out=2, groups=1, kh=1, kw=1,
           stride_h=1, stride_w=1, dil_h=1, dil_w=1)
try:
    d.submit([Layer("conv", t(0), t(4096), t(8192), None, "none", geo)] * 1025)
    print("TOO-MANY-LAYERS accepted")
except pyaccel.AccelError as e:
    print("TOO-MANY-LAYERS", errno.errorcode[e.errno])
x = np.ones((1, 1, 2, 2), np.float32)
print("CONV", d.conv2d(x, np.full((1, 1, 1, 1), 3, np.float32)).sum())
EOF"""


def test_driver_does_not_trust_huge_limit_registers(built):
    r = boot("lying-limits", CHECK, timeout=120,
             extra_args=["-global", "convaccel.fault-limit-value=0xffffffff"])
    assert r.status == 0, tail(r.console)
    assert "LIMITS 16 1024 16 4096 1024" in r.console, tail(r.console)
    assert "TOO-MANY-LAYERS EINVAL" in r.console, tail(r.console)
    assert "CONV 12.0" in r.console, tail(r.console)
    assert "limit register 0x060 reads 4294967295; using 1024" in r.console + r.dmesg
    # the warnings name the lie; nothing else may be wrong with the boot
    assert [p for p in r.problems if "limit register" not in p] == [], r.problems
