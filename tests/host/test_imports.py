"""The model builder and the reference need only numpy: no cffi, no pyudev."""
import subprocess
import sys

from conftest import TOP

CODE = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cffi", "_cffi_backend", "pyudev"):
            raise ImportError(f"{name} is blocked for this test")
sys.meta_path.insert(0, Block())
import numpy as np
import pyaccel
from pyaccel import models, reference
m = models.mobilenet_v1(0.25, 64, num_classes=3)
print(m.reference(np.zeros((1, 3, 64, 64), np.float32)).shape, pyaccel.AccelError.__name__)
"""


def test_models_and_reference_import_without_device_stack():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=TOP, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(1,", "3)", "AccelError"]
