"""Power-off (and kexec) stop the device: the driver's .shutdown callback
resets it, so no DMA runs on across the handover (issue #10, defect 10).

The guest queues a long job (delay fault) and powers off at once; QEMU's
trace of the device must show a reset after that job's doorbell.
"""
from __future__ import annotations

import re

from conftest import boot, tail

CMD = ("echo 'delay-us 3000000' > /sys/kernel/debug/convaccel0/inject && "
       "python3 -c 'import numpy as np, pyaccel; d = pyaccel.open(); "
       "x = np.ones((1, 1, 2, 2), np.float32); "
       "import threading; threading.Thread(target=d.conv2d, args=(x, x[:, :, :1, :1]), "
       "daemon=True).start(); import time; time.sleep(0.5); print(\"QUEUED\")'")


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
