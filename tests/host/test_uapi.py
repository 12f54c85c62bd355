"""The Python view of the uapi header equals the C compiler's view."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pyaccel import uapi

TOP = Path(__file__).resolve().parents[2]
HEADER = TOP / "kernel" / "include" / "uapi" / "linux" / "convaccel.h"


def structs() -> list[str]:
    return re.findall(r"^struct (convaccel_\w+) \{", HEADER.read_text(), re.M)


def c_layout(tmp_path: Path, compiler: str = "gcc") -> dict[str, int]:
    """Every struct's size and field offsets and every constant, as C sees them."""
    lines = []
    for s in structs():
        lines.append(f'printf("sizeof {s} %zu\\n", sizeof(struct {s}));')
        for f in uapi.struct_fields(f"struct {s}"):
            lines.append(f'printf("offsetof {s}.{f} %zu\\n", offsetof(struct {s}, {f}));')
    for name in uapi.CONSTANTS:
        lines.append(f'printf("const {name} %llu\\n", (unsigned long long)({name}));')
    src = tmp_path / "layout.c"
    src.write_text("#include <stdio.h>\n#include <stddef.h>\n"
                   f'#include "{HEADER}"\nint main(void) {{\n' + "\n".join(lines)
                   + "\nreturn 0; }\n")
    exe = tmp_path / "layout"
    subprocess.run([compiler, "-Wall", "-Werror", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {key: int(v) for key, v in (l.rsplit(" ", 1) for l in out.splitlines())}


def py_layout() -> dict[str, int]:
    layout = {}
    for s in structs():
        layout[f"sizeof {s}"] = uapi.ffi.sizeof(f"struct {s}")
        for f in uapi.struct_fields(f"struct {s}"):
            layout[f"offsetof {s}.{f}"] = uapi.ffi.offsetof(f"struct {s}", f)
    layout.update({f"const {k}": v for k, v in uapi.CONSTANTS.items()})
    return layout


def test_header_has_structs_and_ioctls():
    assert "convaccel_info" in structs()
    assert uapi.ioctl_number("INFO") > 0
    assert uapi.ABI_VERSION >= 1


def test_python_layout_equals_c_layout(tmp_path):
    assert py_layout() == c_layout(tmp_path)


def test_structs_are_padded_to_8_bytes():
    for s in structs():
        assert uapi.ffi.sizeof(f"struct {s}") % 8 == 0, s
