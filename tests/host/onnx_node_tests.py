"""The ONNX backend node tests (onnx.backend.test.case.node) of every
operator pyaccel.onnx claims, exported for the guest.

The onnx wheel has no node test files: it has the Python that generates
them. Importing only the claimed operators' case modules runs just their
``export*`` functions (the full ``collect_testcases`` runs all 1,884). Each
test becomes ``<dir>/<test name>/model.onnx`` plus ``data.npz`` (input_i,
output_i of every data set, the suite's rtol/atol) and ``<dir>/manifest.json``
(the operator each test belongs to, the onnx version, the export key). The
guest (tests/guest/test_onnx_nodes.py) reads the folder over the 9p share.

    python tests/host/onnx_node_tests.py [DIR]      # default build/onnx-node-tests
"""
from __future__ import annotations

import hashlib
import importlib
import sys
import warnings
from pathlib import Path

import numpy as np

from export_dir import export_once

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP))
DEFAULT_DIR = TOP / "build" / "onnx-node-tests"

# operator -> its case module in onnx.backend.test.case.node
MODULES = {
    "Conv": "conv", "BatchNormalization": "batch_normalization", "Relu": "relu",
    "Clip": "clip", "LeakyRelu": "leakyrelu", "Sigmoid": "sigmoid",
    "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish", "Add": "add", "Mul": "mul",
    "Concat": "concat", "Split": "split", "Slice": "slice", "Reshape": "reshape",
    "Transpose": "transpose", "MaxPool": "maxpool", "AveragePool": "averagepool",
    "GlobalAveragePool": "globalaveragepool", "GlobalMaxPool": "globalmaxpool",
    "ReduceMean": "reducemean", "Flatten": "flatten", "Gemm": "gemm", "MatMul": "matmul",
    "Softmax": "softmax", "Identity": "identity", "Dropout": "dropout",
}


def key() -> str:
    import onnx

    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(Path(__file__).with_name("export_dir.py").read_bytes())
    h.update((TOP / "pyaccel" / "onnx.py").read_bytes())     # the skip decisions
    h.update(onnx.__version__.encode())
    return h.hexdigest()[:16]


def collect() -> list:
    """(operator, TestCase) of every node test of the claimed operators."""
    from onnx.backend.test.case import node as cases

    cases._NodeTestCases.clear()
    cases._existing_names.clear()
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for op, mod in MODULES.items():
            name = f"onnx.backend.test.case.node.{mod}"
            before = len(cases._NodeTestCases)
            if name in sys.modules:             # exports ran at the first import only
                importlib.reload(sys.modules[name])
            else:
                importlib.import_module(name)
            out += [(op, c) for c in cases._NodeTestCases[before:]]
    return out


def _array(v):
    from onnx import numpy_helper

    if isinstance(v, (np.ndarray, np.generic)):
        return np.asarray(v)
    if hasattr(v, "dims"):
        return numpy_helper.to_array(v)
    return None                                 # sequences, optionals: not ours


def loads(case, arrays: dict) -> str:
    """"" if pyaccel.onnx loads the test's model, else why not (the skip reason)."""
    from pyaccel import onnx as ponnx

    params = ponnx.parameter_inputs(case.model)
    names = [i.name for i in case.model.graph.input]
    bind = {n: arrays[f"0_input_{j}"] for j, n in enumerate(names) if n in params}
    try:
        ponnx.load(case.model, constants=bind)
    except ponnx.OnnxImportError as e:
        return f"{e.op_type}: {e.reason}"
    return ""


def export(folder: Path = DEFAULT_DIR) -> dict:
    """Write the folder unless it holds this key's export; the manifest."""
    return export_once(Path(folder), key(), _write_tests, sort_keys=True)


def _write_tests(tmp: Path) -> dict:
    """Fill the empty folder `tmp`; returns its manifest but the key."""
    import onnx

    tests = {}
    for op, case in collect():
        d = tmp / case.name
        d.mkdir()
        onnx.save(case.model, str(d / "model.onnx"))
        arrays, note = {}, ""
        for i, (inputs, outputs) in enumerate(case.data_sets):
            for kind, values in (("input", inputs), ("output", outputs)):
                for j, v in enumerate(values):
                    a = _array(v)
                    if a is None:
                        note = f"{kind} {j} is a {type(v).__name__}, not a tensor"
                        continue
                    arrays[f"{i}_{kind}_{j}"] = a
        np.savez(d / "data.npz", **arrays)
        tests[case.name] = dict(op=op, rtol=case.rtol, atol=case.atol,
                                sets=len(case.data_sets), skip=note or loads(case, arrays))
    return dict(onnx=onnx.__version__, tests=tests)


if __name__ == "__main__":
    import time

    t0 = time.monotonic()
    m = export(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)
    ops: dict = {}
    for t in m["tests"].values():
        ops[t["op"]] = ops.get(t["op"], 0) + 1
    print(f"{len(m['tests'])} node tests of {len(ops)} operators (onnx {m['onnx']}) in "
          f"{time.monotonic() - t0:.1f} s: " + ", ".join(f"{k} {v}" for k, v in ops.items()))
