"""Power-off (and kexec) stop the device: the driver's .shutdown callback
resets it, so no DMA runs on across the handover (issue #10, defect 10).

The guest queues a long job (delay fault) and powers off at once; QEMU's
trace of the device must show a reset after that job's doorbell.
"""
from __future__ import annotations

import re

from conftest import boot, tail

# Submit a job that the delay fault keeps on the device for 3 s, and exit
# without waiting: the running job stays on the device while the guest powers
# off (closing the file cancels only jobs not yet on the device).
CMD = ("echo 'delay-us 3000000' > /sys/kernel/debug/convaccel0/inject && "
       "python3 -c 'import pyaccel; from pyaccel import Layer, Tensor; "
       "d = pyaccel.open(); b = d.buffer(1 << 16); t = lambda o: Tensor(b.handle, o); "
       "g = dict(n=1, c_in=1, h_in=2, w_in=2, c_out=1, h_out=2, w_out=2, groups=1, kh=1, "
       "kw=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1); "
       "d.submit([Layer(\"conv\", t(0), t(4096), t(8192), None, \"none\", g)]); "
       "print(\"QUEUED\")'")


def test_poweroff_resets_a_busy_device(built):
    r = boot("shutdown-busy", CMD, timeout=120,
             extra_args=["-trace", "convaccel_reset", "-trace", "convaccel_doorbell"])
    assert r.status == 0 and "QUEUED" in r.console, tail(r.console)
    log = (r.out_dir / "qemu-guest-errors.log").read_text(errors="replace")
    events = re.findall(r"convaccel_(reset|doorbell)", log)
    assert "doorbell" in events, f"the job never reached the device:\n{log[-2000:]}"
    last_doorbell = len(events) - 1 - events[::-1].index("doorbell")
    assert "reset" in events[last_doorbell:], \
        f"the guest powered off with the device still running a job:\n{log[-2000:]}"
