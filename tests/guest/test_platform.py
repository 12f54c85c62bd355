"""The platform: DT binding, device node, info ioctl, IRQ, module lifecycle."""
from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import subprocess
import sys

import pytest

import pyaccel
from pyaccel import uapi

from conftest import REGS, load_module, sh, unload_module

PLATFORM = "/sys/bus/platform/devices/a100000.accel"


def test_driver_bound_through_dt_node():
    assert os.path.realpath(f"{PLATFORM}/driver").endswith("/drivers/convaccel")
    with open(f"{PLATFORM}/of_node/compatible", "rb") as f:
        assert f.read() == b"qemu,convaccel\0"
    with open(f"{PLATFORM}/modalias") as f:
        assert f.read().strip() == "of:NaccelT(null)Cqemu,convaccel"


def test_device_node_exists_and_is_root_only():
    st = os.stat("/dev/convaccel0")
    assert stat.S_ISCHR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert os.listdir(f"{PLATFORM}/misc") == ["convaccel0"]


def test_info_matches_the_device_registers(dev, regs):
    info = dev.info
    dump = dict(re.findall(r"^(\w+)\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)$",
                           open("/sys/kernel/debug/convaccel0/regs").read(), re.M))
    assert info.abi_version == uapi.ABI_VERSION
    assert info.hw_id == int(dump["ID"], 16) == regs["CONVACCEL_ID_VALUE"]
    assert info.hw_version == int(dump["VERSION"], 16) == regs["CONVACCEL_VERSION_VALUE"]
    assert info.hw_caps == int(dump["CAPS"], 16)
    assert info.instance == 0
    assert open("/sys/class/misc/convaccel0/hw_version").read().strip() == info.version


def test_unknown_ioctl_is_enotty(dev):
    with pytest.raises(OSError) as e:
        fcntl.ioctl(dev.fileno(), (2 << 30) | (8 << 16) | (0xCA << 8) | 0x7F, bytearray(8))
    assert e.value.errno == errno.ENOTTY


def info_of_size(dev, size: int) -> bytearray:
    good = uapi.ioctl_number("INFO")
    arg = bytearray(b"\xff" * max(size, 1))
    fcntl.ioctl(dev.fileno(), (good & ~(0x3FFF << 16)) | (size << 16), arg)
    return arg


@pytest.mark.parametrize("size", [0, 8, 31, 33, 64, 95])
def test_info_shorter_than_its_first_version_is_einval(dev, size):
    with pytest.raises(OSError) as e:
        info_of_size(dev, size)
    assert e.value.errno == errno.EINVAL


def test_info_of_any_later_size(dev):
    """ABI 3's 96-byte INFO still works (it gets the fields it knows); a
    longer struct than this driver's gets zeros where it knows nothing."""
    full = bytes(uapi.ffi.buffer(uapi.ffi.new("struct convaccel_info *")))
    n = len(full)
    old = info_of_size(dev, 96)
    now = info_of_size(dev, n)
    assert old == now[:96]
    longer = info_of_size(dev, n + 40)
    assert longer[:n] == now and longer[n:] == bytes(40)


def test_info_with_bad_pointer_is_efault(dev):
    with pytest.raises(pyaccel.AccelError) as e:
        dev.ioctl("INFO", uapi.ffi.cast("void *", 16))
    assert e.value.errno == errno.EFAULT


def interrupts_of(name: str) -> int:
    for line in open("/proc/interrupts"):
        if line.rstrip().endswith(name):
            return sum(int(x) for x in line.split()[1:] if x.isdigit())
    raise AssertionError(f"{name} not in /proc/interrupts")


def test_irq_reaches_the_driver(dev):
    before_driver = dev.query_info().irq_count
    before_kernel = interrupts_of("convaccel0")
    with open("/sys/kernel/debug/convaccel0/irq_test", "w") as f:
        f.write("1")
    assert dev.query_info().irq_count == before_driver + 1
    assert interrupts_of("convaccel0") == before_kernel + 1
    assert int(open("/sys/class/misc/convaccel0/irq_count").read()) == before_driver + 1


def test_python_discovery_lists_the_device(regs):
    entries = pyaccel.devices()
    assert [e.index for e in entries] == [0]
    e = entries[0]
    assert e.node == "/dev/convaccel0"
    assert e.compatible == ("qemu,convaccel",)
    assert e.platform_device == "a100000.accel"
    v = regs["CONVACCEL_VERSION_VALUE"]
    assert e.attributes["hw_version"] == f"{v >> 16}.{v & 0xffff}"


def test_open_by_index_and_path():
    with pyaccel.open(0) as a, pyaccel.open("/dev/convaccel0") as b:
        assert a.info.hw_id == b.info.hw_id
    with pytest.raises(pyaccel.DeviceNotFoundError, match="no convaccel3: present are convaccel0"):
        pyaccel.open(3)


def test_closed_device_raises(dev):
    dev.close()
    with pytest.raises(pyaccel.AccelError, match="closed"):
        dev.query_info()


def test_cli_info(regs):
    out = subprocess.run([sys.executable, "-m", "pyaccel", "info"], capture_output=True,
                         text=True, check=True).stdout
    v = regs["CONVACCEL_VERSION_VALUE"]
    assert re.search(r"^hw_id\s+0x434e5641$", out, re.M), out
    assert re.search(rf"^hw version\s+{v >> 16}\.{v & 0xffff}$", out, re.M), out


def test_abi_mismatch_is_refused(monkeypatch):
    monkeypatch.setattr(uapi, "ABI_VERSION", uapi.ABI_VERSION + 1)
    with pytest.raises(pyaccel.AbiMismatchError, match="speaks uapi ABI"):
        pyaccel.open()


def test_permission_denied_is_clear():
    code = ("import pyaccel\n"
            "try:\n    pyaccel.open()\n"
            "except pyaccel.DevicePermissionError as e:\n    print('denied:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         preexec_fn=lambda: os.setuid(65534), check=True).stdout
    assert "denied: cannot open /dev/convaccel0: permission denied" in out
    assert "EACCES" in out


def test_no_device_is_clear():
    unload_module()
    with pytest.raises(pyaccel.DeviceNotFoundError, match="driver is not loaded"):
        pyaccel.open()
    out = subprocess.run([sys.executable, "-m", "pyaccel", "list"], capture_output=True, text=True)
    assert out.returncode == 1 and "driver is not loaded" in out.stdout


def test_rmmod_with_open_file_is_refused(dev):
    r = sh("rmmod convaccel", check=False)
    assert r.returncode != 0
    assert os.path.isdir("/sys/module/convaccel")
    dev.close()
    unload_module()
    assert not os.path.exists("/dev/convaccel0")


def test_reload_cycles_leave_no_warning(dmesg_mark):
    # 10 here (0.6 s each on TCG); make stress's lifecycle suite does 50 on
    # the debug kernel.
    for _ in range(10):
        unload_module()
        assert not os.path.exists("/dev/convaccel0")
        assert not os.path.exists("/sys/kernel/debug/convaccel0")
        load_module()
        with pyaccel.open() as d:
            assert d.info.instance == 0
    bad = [l for l in dmesg_mark() if re.search(r"WARNING|BUG|Oops|convaccel.*(error|fail)", l)]
    assert bad == []


def test_unbind_and_bind_through_sysfs(dmesg_mark):
    drv = "/sys/bus/platform/drivers/convaccel"
    with open(f"{drv}/unbind", "w") as f:
        f.write("a100000.accel")
    assert not os.path.exists("/dev/convaccel0")
    with open(f"{drv}/bind", "w") as f:
        f.write("a100000.accel")
    with pyaccel.open() as d:
        assert d.info.hw_id == REGS["CONVACCEL_ID_VALUE"]
    assert not [l for l in dmesg_mark() if re.search(r"WARNING|BUG|Oops", l)]


def test_kernel_log_is_clean():
    log = sh("dmesg").stdout
    bad = [l for l in log.splitlines()
           if re.search(r"BUG:|WARNING:|Oops|Call trace:|Unable to handle", l)]
    assert bad == []


def test_unbind_with_open_file_and_mapping(dmesg_mark):
    """The device goes away under an open file: ioctls say ENODEV, closing
    is clean, and binding again works. (What happens to the mapping:
    test_hardening.py::test_4_unbind_stops_mmap_and_tears_down_mappings.)"""
    import errno as _errno
    import numpy as np

    drv = "/sys/bus/platform/drivers/convaccel"
    dev = pyaccel.open()
    buf = dev.buffer(4096)
    view = buf.array(16)
    view[:] = 5.0
    with open(f"{drv}/unbind", "w") as f:
        f.write("a100000.accel")
    with pytest.raises(pyaccel.AccelError) as e:
        dev.query_info()
    assert e.value.errno == _errno.ENODEV
    dev.close()
    del view, buf
    with open(f"{drv}/bind", "w") as f:
        f.write("a100000.accel")
    with pyaccel.open() as d:
        x = np.ones((1, 1, 2, 2), np.float32)
        assert np.all(d.conv2d(x, np.full((1, 1, 1, 1), 2, np.float32)) == 2.0)
    assert not [l for l in dmesg_mark() if re.search(r"WARNING|BUG|Oops", l)]
