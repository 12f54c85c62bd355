"""A folder of exported test files, written again only when its key changes.

guest_models.py and onnx_node_tests.py export what the guest reads over the
share. The folder's manifest.json records the export's key (a hash of what
made it): a folder with the current key is reused as it is.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable


def export_once(folder: Path, key: str, write: Callable[[Path], dict],
                sort_keys: bool = False) -> dict:
    """The manifest of `folder` if it holds `key`'s export. Else `write(tmp)`
    fills the empty folder `<folder>.part` and returns the manifest; with
    "key" first it is saved there as manifest.json, then tmp replaces
    `folder`. Returns the manifest."""
    path = folder / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("key") == key:
            return old
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = {"key": key, **write(tmp)}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=sort_keys))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return manifest
