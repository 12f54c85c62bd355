"""python3 -m pyaccel: list and inspect accelerators."""
from __future__ import annotations

import argparse
import sys

from . import discovery
from .device import open as open_device
from .errors import AccelError


def cmd_list(args: argparse.Namespace) -> int:
    entries = discovery.devices()
    if not entries:
        print(f"no convaccel device: {discovery.why_none()}")
        return 1
    for e in entries:
        attrs = " ".join(f"{k}={v}" for k, v in sorted(e.attributes.items()))
        print(f"{e.node}  {e.platform_device}  {','.join(e.compatible)}  {attrs}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    target = int(args.device) if args.device and args.device.isdigit() else args.device
    with open_device(target) as dev:
        i = dev.info
        print(f"device       {dev.path}")
        print(f"hw id        0x{i.hw_id:08x}")
        print(f"hw version   {i.version}")
        print(f"hw caps      0x{i.hw_caps:08x}")
        print(f"abi version  {i.abi_version}")
        print(f"instance     {i.instance}")
        print(f"irq count    {i.irq_count}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m pyaccel", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list accelerators").set_defaults(func=cmd_list)
    info = sub.add_parser("info", help="show one accelerator's information")
    info.add_argument("device", nargs="?", help="index (0, 1, ...) or device path; default: first")
    info.set_defaults(func=cmd_info)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except AccelError as e:
        print(f"pyaccel: {e}", file=sys.stderr)
        return 1
