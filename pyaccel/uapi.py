"""The driver's user API, read from its C header at import time.

The header (kernel/include/uapi/linux/convaccel.h, shipped in the package
as convaccel.h) is the single source of truth: struct layouts go to cffi
(ABI mode: no compiler needed), integer #defines become module constants,
and ioctl numbers are computed with the kernel's generic _IOC encoding.
"""
from __future__ import annotations

import ast
import operator
import re
from pathlib import Path

import cffi

HEADER = Path(__file__).with_name("convaccel.h")

_FIXED_TYPES = """
typedef uint8_t __u8;   typedef int8_t __s8;
typedef uint16_t __u16; typedef int16_t __s16;
typedef uint32_t __u32; typedef int32_t __s32;
typedef uint64_t __u64; typedef int64_t __s64;
"""

# asm-generic/ioctl.h, used by arm64 and x86
_IOC_NRSHIFT, _IOC_TYPESHIFT, _IOC_SIZESHIFT, _IOC_DIRSHIFT = 0, 8, 16, 30
_IOC_DIR = {"_IO": 0, "_IOW": 1, "_IOR": 2, "_IOWR": 3}

_STRUCT = re.compile(r"^struct\s+\w+\s*\{.*?^\};", re.S | re.M)
_DEFINE = re.compile(r"^#define[ \t]+(CONVACCEL_\w+)[ \t]+(.+?)[ \t]*$", re.M)
_IOCTL = re.compile(r"^(_IOWR|_IOR|_IOW|_IO)\((\w+),\s*(\w+)(?:,\s*(struct\s+\w+))?\)$")
_BINOPS = {ast.BitOr: operator.or_, ast.BitAnd: operator.and_, ast.LShift: operator.lshift,
           ast.RShift: operator.rshift, ast.Add: operator.add, ast.Sub: operator.sub,
           ast.Mult: operator.mul}


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _eval_int(expr: str, names: dict[str, int]) -> int | None:
    """Value of a C integer constant expression, or None if it is not one."""
    expr = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\b", r"\1", expr)
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            return ~ev(node.operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError(expr)

    try:
        return ev(tree)
    except ValueError:
        return None


def load(header: Path = HEADER) -> tuple[cffi.FFI, dict[str, int]]:
    """Parse the header: the FFI with its structs, and its integer constants
    (ioctl request numbers included)."""
    text = _strip_comments(header.read_text()).replace("\\\n", " ")
    ffi = cffi.FFI()
    ffi.cdef(_FIXED_TYPES + "\n".join(_STRUCT.findall(text)))
    consts: dict[str, int] = {}
    for name, expr in _DEFINE.findall(text):
        m = _IOCTL.match(expr)
        if m:
            kind, base, nr, ctype = m.groups()
            size = ffi.sizeof(ctype) if ctype else 0
            consts[name] = ((_IOC_DIR[kind] << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT)
                            | (consts[base] << _IOC_TYPESHIFT)
                            | (_eval_int(nr, consts) << _IOC_NRSHIFT))
            continue
        value = _eval_int(expr, consts)
        if value is not None:
            consts[name] = value
    return ffi, consts


ffi, CONSTANTS = load()
ABI_VERSION: int = CONSTANTS["CONVACCEL_ABI_VERSION"]


def ioctl_number(name: str) -> int:
    """The request number of CONVACCEL_IOCTL_<name>."""
    return CONSTANTS[f"CONVACCEL_IOCTL_{name}"]


def struct_fields(ctype: "str | ffi.CType") -> list[str]:
    """Field names of a struct (a C type name or a cffi type), in order."""
    t = ffi.typeof(ctype) if isinstance(ctype, str) else ctype
    return [name for name, _ in t.fields]
