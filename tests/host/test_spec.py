"""docs/hardware.md against include/convaccel_regs.h: every register offset,
descriptor field offset and size, bit and status code the spec's tables give
must be the header's, and every one the header defines must be in the spec.

The parser is strict: a row of a known table that it cannot match fails the
test, so the two files cannot drift apart again unnoticed."""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from pyaccel import uapi

from conftest import TOP

SPEC = TOP / "docs" / "hardware.md"
R = uapi.load(TOP / "include" / "convaccel_regs.h")[1]
TYPE_SIZES = {"u32": 4, "u64": 8, "f32": 4}


@dataclass
class Table:
    heading: str            # the last Markdown heading above the table
    columns: list[str]
    rows: list[list[str]]
    line: int               # of the header row, 1-based


def parse_tables(text: str) -> list[Table]:
    tables, heading = [], ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-| :]+\|$",
                                                                   lines[i + 1]):
            columns = [c.strip() for c in line.strip("|").split("|")]
            table = Table(heading, columns, [], i + 1)
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                table.rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            tables.append(table)
            continue
        i += 1
    return tables


TABLES = parse_tables(SPEC.read_text())


def tables_with(columns: list[str]) -> list[Table]:
    return [t for t in TABLES if t.columns[:len(columns)] == columns]


def name_of(cell: str) -> str:
    """`NAME` -> NAME; anything else fails."""
    m = re.fullmatch(r"`([A-Za-z_][A-Za-z0-9_]*)`", cell)
    assert m, f"not a `name`: {cell!r}"
    return m.group(1)


def where(t: Table, row: list[str]) -> str:
    return f"{SPEC.name}:{t.line} ({t.heading}): row {row}"


# --- registers -------------------------------------------------------------------

def test_register_table_matches_the_header():
    (table,) = tables_with(["offset", "name", "access", "reset", "meaning"])
    seen = {}
    for row in table.rows:
        assert len(row) == 5, where(table, row)
        assert re.fullmatch(r"0x[0-9a-f]{3}", row[0]), where(table, row)
        name = name_of(row[1])
        const = f"CONVACCEL_REG_{name}"
        assert const in R, f"{where(table, row)}: no {const} in the header"
        assert R[const] == int(row[0], 16), \
            f"{where(table, row)}: the header says {R[const]:#05x}"
        assert row[2] in ("RO", "RW", "WO", "RW1C"), where(table, row)
        seen[const] = R[const]
    documented = set(seen)
    defined = {k for k in R if k.startswith("CONVACCEL_REG_")}
    assert defined == documented, f"registers not in the spec: {sorted(defined - documented)}"
    offsets = list(seen.values())
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert all(o % 4 == 0 and o < R["CONVACCEL_MMIO_SIZE"] for o in offsets)


# --- descriptors and records ------------------------------------------------------

RECORDS = [  # heading prefix, header prefix
    ("Job descriptor", "CONVACCEL_JOB"),
    ("Layer descriptor", "CONVACCEL_LAYER"),
    ("Result record", "CONVACCEL_RESULT"),
    ("Per-layer statistics record", "CONVACCEL_STATS"),
    ("V2 layer descriptor", "CONVACCEL_LAYER2"),
    ("Tensor view", "CONVACCEL_VIEW"),
]


def record_table(heading: str) -> Table:
    found = [t for t in tables_with(["offset", "type", "field", "meaning"])
             if t.heading.startswith(heading)]
    assert len(found) == 1, f"one table under a heading '{heading}...' expected, got {found}"
    return found[0]


def test_every_field_table_is_known():
    known = {record_table(h).line for h, _ in RECORDS}
    for t in tables_with(["offset", "type", "field"]):
        assert t.line in known, f"{SPEC.name}:{t.line}: field table under an unknown heading"


@pytest.mark.parametrize("heading, prefix", RECORDS, ids=[p for _, p in RECORDS])
def test_record_layout_matches_the_header(heading, prefix):
    table = record_table(heading)
    m = re.search(r"\((\d+) bytes", table.heading)
    assert m, f"{SPEC.name}:{table.line}: heading '{table.heading}' gives no size in bytes"
    size = int(m.group(1))
    assert R[f"{prefix}_SIZE"] == size, \
        f"'{table.heading}': the header's {prefix}_SIZE is {R[prefix + '_SIZE']}"
    documented, offset = set(), 0
    for row in table.rows:
        assert len(row) == 4, where(table, row)
        assert re.fullmatch(r"0x[0-9a-f]{2}", row[0]), where(table, row)
        assert int(row[0], 16) == offset, \
            f"{where(table, row)}: expected offset {offset:#04x} (fields must be contiguous)"
        m = re.fullmatch(r"(\d+) B", row[1])
        assert row[1] in TYPE_SIZES or m, f"{where(table, row)}: unknown type"
        width = TYPE_SIZES.get(row[1]) or int(m.group(1))
        if row[2] == "reserved":
            const = f"{prefix}_RSVD_OFF"
            if const in R:
                assert R[const] == offset, f"{where(table, row)}: the header says {R[const]:#x}"
                documented.add(const)
        else:
            const = f"{prefix}_{name_of(row[2]).upper()}_OFF"
            assert const in R, f"{where(table, row)}: no {const} in the header"
            assert R[const] == offset, f"{where(table, row)}: the header says {R[const]:#x}"
            documented.add(const)
        offset += width
    assert offset == size, f"'{table.heading}': fields cover {offset} bytes, not {size}"
    defined = {k for k in R if k.startswith(prefix + "_") and k.endswith("_OFF")}
    assert defined == documented, f"fields not in the spec: {sorted(defined - documented)}"


# --- bits and codes ------------------------------------------------------------------

BITS = [  # heading, header prefix
    ("CAPS", "CONVACCEL_CAP"),
    ("CTRL", "CONVACCEL_CTRL"),
    ("INT_STATUS and INT_ENABLE", "CONVACCEL_INT"),
    ("STATUS", "CONVACCEL_STATUS"),
]


@pytest.mark.parametrize("heading, prefix", BITS, ids=[p for _, p in BITS])
def test_bit_tables_match_the_header(heading, prefix):
    found = [t for t in tables_with(["bit"]) + tables_with(["bits"]) if t.heading == heading]
    assert len(found) == 1, f"one bit table under '{heading}' expected"
    table = found[0]
    for row in table.rows:
        assert len(row) == len(table.columns), where(table, row)
        name = name_of(row[1])
        m = re.fullmatch(r"(\d+)(?::(\d+))?", row[0])
        assert m, where(table, row)
        hi, lo = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi == lo:
            const = f"{prefix}_{name}"
            assert R.get(const) == 1 << hi, f"{where(table, row)}: the header has {R.get(const)}"
        else:   # a field: the header has an accessor macro, checked by name only
            text = (TOP / "include" / "convaccel_regs.h").read_text()
            assert re.search(rf"#define\s+{prefix}_{name}\(", text), where(table, row)


def test_status_codes_match_the_header():
    (table,) = tables_with(["code", "name", "meaning"])
    codes = set()
    for row in table.rows:
        assert len(row) == 3 and row[0].isdigit(), where(table, row)
        const = f"CONVACCEL_ERR_{name_of(row[1])}"
        assert R.get(const) == int(row[0]), f"{where(table, row)}: the header has {R.get(const)}"
        codes.add(int(row[0]))
    assert codes == set(range(R["CONVACCEL_ERR_COUNT"])), "status codes missing in the spec"
