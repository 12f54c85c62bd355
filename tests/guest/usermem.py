"""User memory the driver's ioctls must survive: read-only pages, and
userfaultfd pages that stall a copy_to_user for as long as the test likes.

Only libc through cffi (ABI mode): the guest has no compiler.
"""
from __future__ import annotations

import os
import select

import cffi

_ffi = cffi.FFI()
_ffi.cdef("""
void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off);
int munmap(void *addr, size_t len);
int mprotect(void *addr, size_t len, int prot);
int madvise(void *addr, size_t len, int advice);
long syscall(long number, ...);
int ioctl(int fd, unsigned long request, void *arg);
struct uffdio_api { uint64_t api; uint64_t features; uint64_t ioctls; };
struct uffdio_range { uint64_t start; uint64_t len; };
struct uffdio_register { struct uffdio_range range; uint64_t mode; uint64_t ioctls; };
struct uffdio_copy { uint64_t dst; uint64_t src; uint64_t len; uint64_t mode; int64_t copy; };
""")
_libc = _ffi.dlopen(None)

PAGE = os.sysconf("SC_PAGE_SIZE")
PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
MADV_DONTNEED = 4
SYS_USERFAULTFD = 282          # arm64 (asm-generic/unistd.h)
UFFD_API = 0xAA
UFFDIO_REGISTER_MODE_MISSING = 1


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (UFFD_API << 8) | nr


UFFDIO_API = _iowr(0x3F, _ffi.sizeof("struct uffdio_api"))
UFFDIO_REGISTER = _iowr(0x00, _ffi.sizeof("struct uffdio_register"))
UFFDIO_COPY = _iowr(0x03, _ffi.sizeof("struct uffdio_copy"))


def _check(ret: int, what: str) -> int:
    if ret < 0 or ret == -1:
        err = _ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


class Pages:
    """Private anonymous pages at a fixed address (munmapped by close())."""

    def __init__(self, count: int) -> None:
        self.size = count * PAGE
        p = _libc.mmap(_ffi.NULL, self.size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if int(_ffi.cast("intptr_t", p)) == -1:
            raise OSError(_ffi.errno, "mmap failed")
        self.addr = int(_ffi.cast("uintptr_t", p))

    def page(self, i: int) -> int:
        return self.addr + i * PAGE

    def write(self, addr: int, data: bytes) -> None:
        _ffi.memmove(_ffi.cast("char *", addr), data, len(data))

    def read(self, addr: int, n: int) -> bytes:
        return bytes(_ffi.buffer(_ffi.cast("char *", addr), n))

    def protect(self, addr: int, length: int, prot: int) -> None:
        _check(_libc.mprotect(_ffi.cast("void *", addr), length, prot), "mprotect")

    def discard(self, addr: int, length: int) -> None:
        """Drop the pages' contents: the next touch faults them in again."""
        _check(_libc.madvise(_ffi.cast("void *", addr), length, MADV_DONTNEED), "madvise")

    def close(self) -> None:
        _libc.munmap(_ffi.cast("void *", self.addr), self.size)


class Userfault:
    """A userfaultfd in MISSING mode: a touch of a registered page that has
    no contents blocks the toucher (user or kernel) until resolve()."""

    def __init__(self) -> None:
        flags = _ffi.cast("long", os.O_CLOEXEC | os.O_NONBLOCK)
        self.fd = _check(_libc.syscall(SYS_USERFAULTFD, flags),
                         "userfaultfd (CONFIG_USERFAULTFD)")
        api = _ffi.new("struct uffdio_api *", {"api": UFFD_API})
        _check(_libc.ioctl(self.fd, UFFDIO_API, api), "UFFDIO_API")

    def register(self, addr: int, length: int) -> None:
        reg = _ffi.new("struct uffdio_register *", {
            "range": {"start": addr, "len": length}, "mode": UFFDIO_REGISTER_MODE_MISSING})
        _check(_libc.ioctl(self.fd, UFFDIO_REGISTER, reg), "UFFDIO_REGISTER")

    def next_fault(self, timeout: float) -> int:
        """The page address of the next fault, waiting up to timeout s."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            raise TimeoutError(f"no page fault within {timeout} s")
        msg = os.read(self.fd, 32)          # struct uffd_msg
        assert msg[0] == 0x12, f"not a page-fault event: {msg[0]:#x}"
        return int.from_bytes(msg[16:24], "little") & ~(PAGE - 1)

    def resolve(self, addr: int, data: bytes = b"") -> None:
        """Give the faulting page its contents (data, zero-padded), wake."""
        src = _ffi.new("char[]", data.ljust(PAGE, b"\0"))
        cp = _ffi.new("struct uffdio_copy *", {
            "dst": addr, "src": int(_ffi.cast("uintptr_t", src)), "len": PAGE})
        _check(_libc.ioctl(self.fd, UFFDIO_COPY, cp), "UFFDIO_COPY")

    def close(self) -> None:
        os.close(self.fd)
