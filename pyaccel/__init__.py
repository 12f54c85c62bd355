"""pyaccel: Python for the convaccel convolution accelerator.

    >>> import pyaccel
    >>> pyaccel.devices()            # what sysfs knows, via pyudev
    >>> with pyaccel.open() as dev:  # the first device
    ...     print(dev.info)
    ...     y = dev.conv2d(x, w, padding=1, activation="relu")
    >>> net = pyaccel.models.mobilenet_v1(0.5).compile(dev)

`pyaccel.reference`, `pyaccel.models` and `pyaccel.graph` need only numpy;
the device API (cffi, pyudev) is imported on first use.
"""
from importlib import import_module
from typing import Any

from .errors import (AbiMismatchError, AccelError, DeviceNotFoundError, DevicePermissionError,
                     JobError, ShapeError, UnsupportedError)

__version__ = "0.1.0"

# name -> module that defines it, imported when first asked for
_LAZY = {
    "Buffer": "buffers", "Device": "device", "Info": "device", "open": "device",
    "DeviceEntry": "discovery", "devices": "discovery",
    "Job": "jobs", "JobResult": "jobs", "Layer": "jobs", "Layer2": "jobs", "Tensor": "jobs",
    "View": "jobs",
    "models": None, "graph": None, "reference": None, "compiler": None,
}

__all__ = ["AbiMismatchError", "AccelError", "DeviceNotFoundError", "DevicePermissionError",
           "JobError", "ShapeError", "UnsupportedError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pyaccel' has no attribute {name!r}")
    module = import_module(f".{_LAZY[name] or name}", __name__)
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value
