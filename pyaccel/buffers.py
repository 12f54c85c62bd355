"""Device buffers: DMA memory the driver owns, mapped into this process,
seen as numpy arrays without copies."""
from __future__ import annotations

import mmap
from typing import TYPE_CHECKING

import numpy as np

from .errors import AccelError
from .uapi import ffi

if TYPE_CHECKING:
    from .device import Device


class Buffer:
    """A device buffer: `handle` names it in submitted layers.

    `array()` returns numpy views of its memory. The mapping stays valid as
    long as any view lives, even after close() (the kernel keeps the memory
    until the last mapping goes).
    """

    def __init__(self, device: "Device", size: int) -> None:
        req = ffi.new("struct convaccel_buffer_create *", {"size": size})
        device.ioctl("BUFFER_CREATE", req, f"create a buffer of {size} bytes")
        self.device = device
        self.handle: int = req.handle
        self.size = size
        try:
            self._map: mmap.mmap | None = mmap.mmap(
                device.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                offset=req.mmap_offset)
        except OSError as e:
            self.destroy()
            raise AccelError(f"cannot map buffer {self.handle} ({size} bytes)", e.errno) from None

    def array(self, shape: tuple[int, ...] | int, dtype=np.float32, offset: int = 0) -> np.ndarray:
        """A numpy view of the buffer's memory at byte `offset`."""
        if self._map is None:
            raise AccelError(f"buffer {self.handle} is closed")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * np.dtype(dtype).itemsize
        if offset < 0 or offset + nbytes > self.size:
            raise AccelError(f"a {shape} {np.dtype(dtype).name} view at offset {offset} "
                             f"does not fit in buffer {self.handle} of {self.size} bytes")
        return np.frombuffer(self._map, dtype=dtype, count=count, offset=offset).reshape(shape)

    def destroy(self) -> None:
        """Release the handle; views keep the memory mapped until they go."""
        if self.handle and not self.device.closed:
            req = ffi.new("struct convaccel_buffer_destroy *", {"handle": self.handle})
            self.device.ioctl("BUFFER_DESTROY", req, f"destroy buffer {self.handle}")
        self.handle = 0
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass        # numpy views still use it: it unmaps when they go
            self._map = None

    close = destroy

    def __enter__(self) -> "Buffer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"<pyaccel.Buffer handle={self.handle} size={self.size}>"
