"""An open accelerator: the file descriptor and the ioctls on it."""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any

from . import uapi
from .discovery import find
from .errors import AbiMismatchError, AccelError, DeviceNotFoundError, from_errno
from .uapi import ffi

ffi.cdef("int ioctl(int fd, unsigned long request, void *arg);")
_libc = ffi.dlopen(None)


@dataclass(frozen=True)
class Info:
    """What the driver reports about the device (struct convaccel_info)."""

    abi_version: int
    hw_id: int
    hw_version: int
    hw_caps: int
    instance: int
    irq_count: int

    @property
    def version(self) -> str:
        return f"{self.hw_version >> 16}.{self.hw_version & 0xffff}"


def _to_dict(cdata: Any) -> dict[str, int]:
    return {name: getattr(cdata, name) for name in uapi.struct_fields(ffi.typeof(cdata).item)
            if not name.startswith("pad")}


class Device:
    """An open /dev/convaccelN. Use as a context manager, or close()."""

    def __init__(self, path: str | os.PathLike, *, check_abi: bool = True) -> None:
        self.path = os.fspath(path)
        self._fd: int | None = None
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise DeviceNotFoundError(f"cannot open {self.path}: no such device node",
                                      e.errno) from None
        except PermissionError as e:
            raise from_errno(e.errno, f"cannot open {self.path}: permission denied (the node "
                             f"is root-only, mode 0600: run as root or change its mode)") from None
        except OSError as e:
            raise from_errno(e.errno, f"cannot open {self.path}") from None
        try:
            self.info = self.query_info()
            if check_abi and self.info.abi_version != uapi.ABI_VERSION:
                raise AbiMismatchError(
                    f"{self.path}: the driver speaks uapi ABI {self.info.abi_version}, this "
                    f"pyaccel speaks {uapi.ABI_VERSION}: use a matching module and package")
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        if self._fd is None:
            raise AccelError(f"{self.path}: device is closed", errno.EBADF)
        return self._fd

    def ioctl(self, name: str, arg: Any) -> None:
        """Run CONVACCEL_IOCTL_<name> with a cffi pointer argument."""
        if _libc.ioctl(self.fileno(), uapi.ioctl_number(name), arg) < 0:
            raise from_errno(ffi.errno, f"{self.path}: ioctl {name} failed")

    def query_info(self) -> Info:
        info = ffi.new("struct convaccel_info *")
        self.ioctl("INFO", info)
        return Info(**_to_dict(info))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"convaccel {self.info.version}"
        return f"<pyaccel.Device {self.path} {state}>"


def open(index_or_path: int | str | os.PathLike | None = None) -> Device:  # noqa: A001
    """Open an accelerator: the first one, the one with this index, or a path."""
    return Device(find(index_or_path))
