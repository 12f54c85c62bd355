"""pyaccel's exceptions: every error the package raises is an AccelError."""
from __future__ import annotations

import errno as _errno
import os


class AccelError(Exception):
    """An accelerator operation failed.

    `errno` is the OS error number when the failure came from the driver
    (None otherwise); the message says what was wrong.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        self.errno = errno
        if errno is not None:
            message = f"{message} [{_errno.errorcode.get(errno, errno)}: {os.strerror(errno)}]"
        super().__init__(message)


class DeviceNotFoundError(AccelError):
    """No accelerator matches the request."""


class DevicePermissionError(AccelError):
    """The device node exists but this process may not open it."""


class AbiMismatchError(AccelError):
    """The driver speaks another version of the uapi than this package."""


class UnsupportedError(AccelError):
    """The device cannot do this (an op, activation or data type its INFO
    does not list); the message names what is missing."""


class ShapeError(AccelError, ValueError):
    """Arguments the device cannot run, caught before any ioctl."""


class JobError(AccelError):
    """The device ran a job and it failed: `result` says how (status,
    reason, layer)."""

    def __init__(self, job_id: int, result) -> None:
        self.job_id = job_id
        self.result = result
        where = "the job" if result.layer is None else f"layer {result.layer}"
        why = f": {result.reason}" if result.status == "error" else ""
        super().__init__(f"job {job_id} ended with status {result.status} at {where}{why}")


def from_errno(err: int, what: str) -> AccelError:
    """The AccelError for a failed call `what` that set errno `err`."""
    if err in (_errno.EACCES, _errno.EPERM):
        return DevicePermissionError(what, err)
    if err in (_errno.ENOENT, _errno.ENODEV, _errno.ENXIO):
        return DeviceNotFoundError(what, err)
    return AccelError(what, err)
