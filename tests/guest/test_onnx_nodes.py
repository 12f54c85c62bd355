"""The ONNX backend node tests of pyaccel.onnx's operators, on the device.

The host exports them (tests/host/onnx_node_tests.py) into
build/onnx-node-tests/ (model.onnx + data.npz per test, manifest.json);
each is one item here: pyaccel.onnx.load, compile for the device
(pyaccel.compiler), run every data set, compare with the expected outputs
at the suite's tolerances (rtol 1e-3, atol 1e-7 unless the case says
otherwise). Nodes the device has no operation for (softmax, a clip range,
a reshape view...) run on the CPU through the compiler's runtime, as in any
compiled model: the item's output says where each node ran.

A test pyaccel cannot load is SKIPPED with the importer's reason (the node,
op type and why); it never passes. The host already ran pyaccel.onnx.load
on each exported test (the same code and files): those it refused carry
their reason in the manifest and are skipped here without loading (loading
costs seconds under TCG); the others load again here. Graph inputs that feed a parameter
position (a Conv's W and B, BatchNormalization's statistics, Gemm's B and C,
MatMul's B, Clip's min/max, Slice's starts/ends/axes/steps, Split's split,
Reshape's shape, ReduceMean's axes, Dropout's ratio and training_mode) are
bound as constants,
as they are initializers in a real model. Per operator, passed / loaded goes
to /out/onnx-node-summary.txt (the host prints it).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

TOP = Path(__file__).resolve().parents[2]
FOLDER = Path(os.environ.get("PYACCEL_ONNX_NODES", TOP / "build" / "onnx-node-tests"))
MANIFEST = json.loads((FOLDER / "manifest.json").read_text()) \
    if (FOLDER / "manifest.json").exists() else None
TESTS = sorted(MANIFEST["tests"]) if MANIFEST else []
RESULTS: dict = {}

pytestmark = pytest.mark.skipif(
    MANIFEST is None, reason=f"no exported node tests in {FOLDER}: the host exports them "
    "(tests/host/test_onnx_nodes.py, or python tests/host/onnx_node_tests.py)")


@pytest.mark.parametrize("key", [MANIFEST["key"] if MANIFEST else "none"])
def test_manifest_key(key):
    """Which export this run used (the host matches the item's name)."""
    print(f"onnx node tests export {MANIFEST['key']} (onnx {MANIFEST['onnx']}), "
          f"{len(TESTS)} tests")


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield
    ops: dict = {}
    for name, outcome in RESULTS.items():
        op = MANIFEST["tests"][name]["op"]
        row = ops.setdefault(op, {"passed": 0, "failed": 0, "skipped": 0, "reasons": {}})
        row[outcome[0]] += 1
        if outcome[0] == "skipped":
            row["reasons"][outcome[1]] = row["reasons"].get(outcome[1], 0) + 1
    lines = [f"{'operator':<20} {'passed':>6} / {'loaded':<6} {'failed':>6} {'skipped':>7}"]
    for op in sorted(ops):
        r = ops[op]
        lines.append(f"{op:<20} {r['passed']:>6} / {r['passed'] + r['failed']:<6} "
                     f"{r['failed']:>6} {r['skipped']:>7}")
    lines.append("")
    for op in sorted(ops):
        for why, k in sorted(ops[op]["reasons"].items()):
            lines.append(f"skipped {op} x{k}: {why}")
    text = "\n".join(lines) + "\n"
    print(text)
    if os.path.isdir("/out") and os.access("/out", os.W_OK):
        Path("/out/onnx-node-summary.txt").write_text(text)


@pytest.fixture(scope="module")
def device():
    """One open device for the module (the per-test `dev` fixture costs ~1 s
    of set-up under TCG, times 200 tests)."""
    import pyaccel
    from conftest import load_module

    load_module()
    with pyaccel.open() as d:
        yield d


@pytest.mark.parametrize("name", TESTS)
def test_node(name, device):
    import onnx

    from pyaccel import compiler
    from pyaccel import onnx as ponnx

    meta = MANIFEST["tests"][name]
    if meta.get("skip"):        # the host's pyaccel.onnx.load of the same files refused it
        RESULTS[name] = ("skipped", meta["skip"])
        pytest.skip(meta["skip"])
    d = FOLDER / name
    data = np.load(d / "data.npz")
    model = onnx.load(str(d / "model.onnx"))
    params = ponnx.parameter_inputs(model)
    runtime = [i.name for i in model.graph.input if i.name not in params]
    names = [i.name for i in model.graph.input]
    feeds = [{n: data[f"{s}_input_{j}"] for j, n in enumerate(names)}
             for s in range(meta["sets"])]
    try:
        graph = ponnx.load(model, constants={k: feeds[0][k] for k in params})
    except ponnx.OnnxImportError as e:
        RESULTS[name] = ("skipped", f"{e.op_type}: {e.reason}")
        pytest.skip(str(e))
    RESULTS[name] = ("failed", "")
    with compiler.compile(graph, device) as net:
        for s, feed in enumerate(feeds):
            inf = net(ponnx.as_feeds(graph, [feed[n] for n in runtime]))
            print(inf.where())
            for j, got in enumerate(ponnx.as_outputs(graph, inf.outputs)):
                want = data[f"{s}_output_{j}"]
                np.testing.assert_allclose(got, want,
                                           rtol=meta["rtol"], atol=meta["atol"],
                                           err_msg=f"{name} data set {s} output {j}")
    RESULTS[name] = ("passed", "")
