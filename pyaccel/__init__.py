"""pyaccel: Python for the convaccel convolution accelerator.

    >>> import pyaccel
    >>> pyaccel.devices()            # what sysfs knows, via pyudev
    >>> with pyaccel.open() as dev:  # the first device
    ...     print(dev.info)
"""
from .device import Device, Info, open
from .discovery import DeviceEntry, devices
from .errors import AbiMismatchError, AccelError, DeviceNotFoundError, DevicePermissionError

__all__ = ["AbiMismatchError", "AccelError", "Device", "DeviceEntry", "DeviceNotFoundError",
           "DevicePermissionError", "Info", "devices", "open"]
__version__ = "0.1.0"
