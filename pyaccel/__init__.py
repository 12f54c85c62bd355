"""pyaccel: Python for the convaccel convolution accelerator.

    >>> import pyaccel
    >>> pyaccel.devices()            # what sysfs knows, via pyudev
    >>> with pyaccel.open() as dev:  # the first device
    ...     print(dev.info)
"""
from .buffers import Buffer
from .device import Device, Info, open
from .discovery import DeviceEntry, devices
from .errors import (AbiMismatchError, AccelError, DeviceNotFoundError, DevicePermissionError,
                     JobError, ShapeError)
from .jobs import Job, JobResult, Layer, Tensor

__all__ = ["AbiMismatchError", "AccelError", "Buffer", "Device", "DeviceEntry",
           "DeviceNotFoundError", "DevicePermissionError", "Info", "Job", "JobError",
           "JobResult", "Layer", "ShapeError", "Tensor", "devices", "open"]
__version__ = "0.1.0"
