"""The ioctl fuzz's own harness (tests/stress/ioctl_fuzz.py): a fuzz that
corrupts its own process reports a "worker failure" that is not the
driver's. Regression test of the SIGSEGV that `make stress` reported after
~350,000 calls: a MAP_FIXED mmap that the driver refuses has already unmapped
the arena's slot, and another thread's allocation could land in the hole
before the slot was covered again (a Python frame stack then became a
device buffer: its frames read as zeros)."""
from __future__ import annotations

import errno
import os
import sys
import threading

from conftest import TOP, load_module

sys.path.insert(0, str(TOP / "tests" / "stress"))
import ioctl_fuzz as fz  # noqa: E402


def test_refused_map_never_lends_the_slot_to_another_thread():
    load_module()
    fd = os.open("/dev/convaccel0", os.O_RDWR)
    arena = fz.Arena(2)
    slot = arena.slots[1]
    refused: list[int] = []
    done = threading.Event()

    def refuse() -> None:               # no buffer has this handle: EINVAL each time
        try:
            for _ in range(2000):
                refused.append(arena.map(slot, fd, 0xDEAD))
        finally:
            done.set()

    t = threading.Thread(target=refuse)
    t.start()
    landed = tries = 0
    try:
        while not done.is_set():        # another thread's allocation, hinted at the slot
            p = fz._mm.mmap(slot, fz.BUF_SIZE, fz.PROT_RW, fz.MAP_PRIVATE | fz.MAP_ANON, -1, 0)
            assert p != fz.MAP_FAILED
            landed += p == slot
            fz._mm.munmap(p, fz.BUF_SIZE)
            tries += 1
    finally:
        t.join()
        arena.close()
        os.close(fd)
    assert set(refused) == {errno.EINVAL}, set(refused)
    assert tries > 0
    assert landed == 0, f"{landed} of {tries} allocations landed in the arena's slot"
