"""Finding accelerators: pyudev over sysfs, no hard-coded /dev paths."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import DeviceNotFoundError

DRIVER = "convaccel"
COMPATIBLE = "qemu,convaccel"


@dataclass(frozen=True)
class DeviceEntry:
    """One accelerator as sysfs describes it."""

    index: int                 # N of /dev/convaccelN
    node: str                  # the character device node
    sys_path: str              # the misc device in sysfs
    platform_device: str       # e.g. "a100000.accel"
    compatible: tuple[str, ...]
    attributes: dict[str, str] = field(default_factory=dict)


def _attributes(device) -> dict[str, str]:
    attrs = {}
    for name in device.attributes.available_attributes:
        if name in ("uevent", "dev"):
            continue
        try:
            attrs[name] = device.attributes.asstring(name).strip()
        except (OSError, UnicodeDecodeError, KeyError):
            continue
    return attrs


def devices() -> list[DeviceEntry]:
    """Every accelerator bound to the convaccel driver, by index."""
    import pyudev  # only needed on a machine that can have devices

    found = []
    for dev in pyudev.Context().list_devices(subsystem="misc"):
        parent = dev.find_parent("platform")
        if parent is None or parent.driver != DRIVER or not dev.sys_name.startswith(DRIVER):
            continue
        compatible = tuple(parent.properties.get(f"OF_COMPATIBLE_{i}")
                           for i in range(int(parent.properties.get("OF_COMPATIBLE_N", 0))))
        found.append(DeviceEntry(
            index=int(dev.sys_name[len(DRIVER):]),
            node=dev.device_node or f"/dev/{dev.sys_name}",
            sys_path=dev.sys_path,
            platform_device=parent.sys_name,
            compatible=compatible,
            attributes=_attributes(dev),
        ))
    return sorted(found, key=lambda e: e.index)


def why_none() -> str:
    """A hint at why devices() is empty."""
    if not os.path.isdir("/sys/module/convaccel"):
        return "the convaccel driver is not loaded (insmod convaccel.ko / modprobe convaccel)"
    return (f"the driver is loaded but bound to no device: does the device tree have a "
            f"'{COMPATIBLE}' node? (see dmesg for probe errors)")


def find(index_or_path: int | str | os.PathLike | None = None) -> str:
    """The device node for an index, a path, or (None) the first device."""
    if isinstance(index_or_path, (str, os.PathLike)):
        return os.fspath(index_or_path)
    entries = devices()
    if not entries:
        raise DeviceNotFoundError(f"no convaccel device found: {why_none()}")
    if index_or_path is None:
        return entries[0].node
    for e in entries:
        if e.index == index_or_path:
            return e.node
    raise DeviceNotFoundError(
        f"no convaccel{index_or_path}: present are "
        + ", ".join(f"convaccel{e.index}" for e in entries))
