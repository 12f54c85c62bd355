"""The in-guest suite.

conftest.py collects this module specially: it boots the board once, runs
`pytest tests/guest` inside the guest against the real driver and emulated
device, and reports each guest test here as a host test, plus one check that
the boot was clean (no QEMU crash, no kernel BUG/WARN/oops).
"""
