"""A board whose accelerator is wrong or badly described: the driver must say
so in one clear dmesg line and leave nothing registered. One boot per case."""
from __future__ import annotations

import pytest

from conftest import boot, tail

GOOD = """/ { accel@a100000 { compatible = "qemu,convaccel";
    reg = <0x0 0x0a100000 0x0 0x1000>; interrupts = <0 15 4>; }; };"""
NO_IRQ = """/ { accel@a100000 { compatible = "qemu,convaccel";
    reg = <0x0 0x0a100000 0x0 0x1000>; }; };"""
NO_REG = """/ { accel { compatible = "qemu,convaccel"; interrupts = <0 15 4>; }; };"""

# After the failed probe: nothing half-registered, and the module unloads.
CHECK = ("dmesg | grep -i convaccel; ls /dev | grep -c convaccel; "
         "ls /sys/kernel/debug | grep -c convaccel; "
         "grep -c convaccel /proc/interrupts; rmmod convaccel && echo RMMOD-OK")


@pytest.mark.parametrize("case, fragment, qemu_args, message", [
    ("wrong-id", GOOD, ["-global", "convaccel.id=0x12345678"],
     "ID register is 0x12345678, expected 0x434e5641: not a convaccel"),
    ("no-irq", NO_IRQ, [], "no interrupt: the device tree node has no usable 'interrupts'"),
    ("no-reg", NO_REG, [], "no MMIO window: the device tree node has no 'reg'"),
])
def test_probe_error_is_clear_and_clean(built, case, fragment, qemu_args, message):
    import board

    r = boot(f"probe-{case}", CHECK, dtb=board.build_dtb(1, [fragment]),
             extra_args=qemu_args, timeout=120)
    assert r.status == 0 and not r.problems, f"{r.problems}\n{tail(r.console)}"
    assert message in r.console, tail(r.console)
    counts = [line for line in r.console.splitlines() if line.strip().isdigit()]
    assert counts == ["0", "0", "0"], tail(r.console)  # no node, no debugfs, no irq
    assert "RMMOD-OK" in r.console
