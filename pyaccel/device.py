"""An open accelerator: the file descriptor and the ioctls on it."""
from __future__ import annotations

import errno
import os
from typing import Any, Sequence

from . import ops, ops_v2, uapi
from .buffers import Buffer
from .jobs import Job, Layer
from .discovery import find
from .errors import AbiMismatchError, AccelError, DeviceNotFoundError, from_errno
from .uapi import ffi

ffi.cdef("int ioctl(int fd, unsigned long request, void *arg);")
_libc = ffi.dlopen(None)


class Info:
    """What the driver reports (struct convaccel_info; the field names are the
    header's: abi_version, hw_id, hw_version, queue_depth, max_kernel, ...)."""

    def __init__(self, cdata: Any) -> None:
        self.fields = {name: getattr(cdata, name)
                       for name in uapi.struct_fields("struct convaccel_info")
                       if name not in ("pad", "reserved")}
        self.__dict__.update(self.fields)

    @property
    def version(self) -> str:
        return f"{self.hw_version >> 16}.{self.hw_version & 0xffff}"

    def __repr__(self) -> str:
        return f"Info({', '.join(f'{k}={v}' for k, v in self.fields.items())})"


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

    @property
    def closed(self) -> bool:
        return self._fd is None

    def ioctl(self, name: str, arg: Any, what: str | None = None) -> None:
        """Run CONVACCEL_IOCTL_<name> with a cffi pointer argument; raise the
        AccelError for its errno, saying `what` failed."""
        if _libc.ioctl(self.fileno(), uapi.ioctl_number(name), arg) < 0:
            raise from_errno(ffi.errno, f"{self.path}: {what or 'ioctl ' + name} failed")

    def query_info(self) -> Info:
        info = ffi.new("struct convaccel_info *")
        self.ioctl("INFO", info, "query device information")
        return Info(info)

    def buffer(self, size: int) -> Buffer:
        """A new device buffer of `size` bytes, mapped."""
        return Buffer(self, size)

    def submit(self, layers: Sequence[Layer] | Any, timeout_ms: int = 0) -> Job:
        """Queue a chain of layers (or an array from jobs.encode); returns at
        once with a Job to wait on."""
        return Job(self, layers, timeout_ms)

    def conv2d(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
               activation=None, timeout=None):
        """activation(conv2d(x, weight) + bias) on the device (see ops.conv2d)."""
        return ops.conv2d(self, x, weight, bias, stride, padding, dilation, groups,
                          activation, timeout)

    def max_pool2d(self, x, kernel_size, stride=None, padding=0, timeout=None):
        """Max pooling on the device; padding never wins."""
        return ops.pool2d(self, "maxpool", x, kernel_size, stride, padding, timeout)

    def avg_pool2d(self, x, kernel_size, stride=None, padding=0, timeout=None):
        """Average pooling on the device; padding counts as zeros."""
        return ops.pool2d(self, "avgpool", x, kernel_size, stride, padding, timeout)

    def global_avg_pool2d(self, x, timeout=None):
        """Mean over H and W: (N, C, H, W) -> (N, C, 1, 1)."""
        return ops.pool2d(self, "avgpool", x, x.shape[2:], 1, 0, timeout)

    # --- hardware 2.0 (ops_v2): PyTorch's argument conventions where they exist

    def supports(self, op: str, activation: str = "none", dtypes=("f32",)) -> bool:
        """Whether INFO lists op (a CONVACCEL_OP_* name), activation and dtypes."""
        try:
            ops_v2.require(self, op, activation, dtypes)
        except AccelError:
            return False
        return True

    def add(self, a, b, activation=None, timeout=None):
        """activation(a + b), float32, same shapes."""
        return ops_v2.elementwise(self, "add", a, b, activation, timeout)

    def mul(self, a, b, activation=None, timeout=None):
        """activation(a * b), float32; b of a's shape or (N, C, 1, 1)."""
        return ops_v2.elementwise(self, "mul", a, b, activation, timeout)

    def scale_shift(self, x, scale, shift, activation=None, timeout=None):
        """activation(x * scale[c] + shift[c])."""
        return ops_v2.scale_shift(self, x, scale, shift, activation, timeout)

    def activation(self, x, spec, timeout=None):
        """One activation: a name of reference.ACTIVATIONS or (name, alpha[, beta])."""
        return ops_v2.activation(self, x, spec, timeout)

    def relu(self, x, timeout=None):
        return ops_v2.activation(self, x, "relu", timeout)

    def relu6(self, x, timeout=None):
        return ops_v2.activation(self, x, "relu6", timeout)

    def leaky_relu(self, x, negative_slope=0.01, timeout=None):
        return ops_v2.activation(self, x, ("leaky_relu", negative_slope), timeout)

    def sigmoid(self, x, timeout=None):
        return ops_v2.activation(self, x, "sigmoid", timeout)

    def hardsigmoid(self, x, timeout=None):
        """PyTorch's hardsigmoid: relu6(x + 3) / 6."""
        return ops_v2.activation(self, x, "hard_sigmoid", timeout)

    def hardswish(self, x, timeout=None):
        """PyTorch's hardswish: x * relu6(x + 3) / 6."""
        return ops_v2.activation(self, x, "hard_swish", timeout)

    def global_max_pool2d(self, x, timeout=None):
        """Max over H and W, any size: (N, C, H, W) -> (N, C, 1, 1)."""
        return ops_v2.global_pool(self, "global_maxpool", x, None, timeout)

    def linear(self, x, weight, bias=None, activation=None, timeout=None):
        """A fully connected layer over the batch (F.linear's conventions)."""
        return ops_v2.linear(self, x, weight, bias, activation, timeout)

    def conv2d_int8(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                    **quant):
        """int8 convolution; arguments as reference.conv2d_int8 (requant=,
        zp_in=, zp_out=, act_min=, act_max=, lut=); bit-exact with it."""
        return ops_v2.conv2d_int8(self, x, weight, bias, stride, padding, dilation, groups,
                                  **quant)

    def linear_int8(self, x, weight, bias=None, **quant):
        """int8 fully connected; arguments as reference.fc_int8."""
        return ops_v2.linear_int8(self, x, weight, bias, **quant)

    def add_int8(self, a, b, **quant):
        """int8 add; arguments as reference.add_int8."""
        return ops_v2.elementwise_int8(self, "add", a, b, **quant)

    def mul_int8(self, a, b, **quant):
        """int8 mul; arguments as reference.mul_int8."""
        return ops_v2.elementwise_int8(self, "mul", a, b, **quant)

    def quantize(self, x, scale, zero_point=0, **clamp):
        """float32 -> int8 (reference.quantize)."""
        return ops_v2.quantize(self, x, scale, zero_point, **clamp)

    def dequantize(self, q, scale, zero_point=0, activation=None):
        """int8 -> float32 (reference.dequantize)."""
        return ops_v2.dequantize(self, q, scale, zero_point, activation)

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
