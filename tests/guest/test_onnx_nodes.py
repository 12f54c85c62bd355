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
op type and why); it never passes. Graph inputs that feed a parameter
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

# inputs at these positions are parameters: bound as constants when the test
# feeds them as graph inputs
PARAMETERS = {"Conv": (1, 2), "BatchNormalization": (1, 2, 3, 4), "Gemm": (1, 2),
              "MatMul": (1,), "Clip": (1, 2), "Slice": (1, 2, 3, 4), "Split": (1,),
              "Reshape": (1,), "ReduceMean": (1,), "Dropout": (1, 2)}

pytestmark = pytest.mark.skipif(
    MANIFEST is None, reason=f"no exported node tests in {FOLDER}: the host exports them "
    "(tests/host/test_onnx_nodes.py, or python tests/host/onnx_node_tests.py)")


def parameter_inputs(model) -> set:
    graph_inputs = {i.name for i in model.graph.input}
    out = set()
    for n in model.graph.node:
        ins = list(n.input)
        out.update(ins[i] for i in PARAMETERS.get(n.op_type, ()) if i < len(ins) and
                   ins[i] in graph_inputs)
    return out


def test_manifest_key():
    """Which export this run used (the host matches it)."""
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


@pytest.mark.parametrize("name", TESTS)
def test_node(name, dev):
    import onnx

    from pyaccel import compiler
    from pyaccel import onnx as ponnx

    meta = MANIFEST["tests"][name]
    d = FOLDER / name
    data = np.load(d / "data.npz")
    model = onnx.load(str(d / "model.onnx"))
    if meta.get("note"):
        RESULTS[name] = ("skipped", meta["note"])
        pytest.skip(meta["note"])
    params = parameter_inputs(model)
    runtime = [i.name for i in model.graph.input if i.name not in params]
    names = [i.name for i in model.graph.input]
    feeds = [{n: data[f"{s}_input_{j}"] for j, n in enumerate(names)}
             for s in range(meta["sets"])]
    try:
        graph = ponnx.load(model, constants={k: feeds[0][k] for k in params})
    except ponnx.OnnxImportError as e:
        reason = f"{e.op_type}: {e.reason}"
        RESULTS[name] = ("skipped", reason.split(":")[0] + ": " + e.reason[:90])
        pytest.skip(str(e))
    RESULTS[name] = ("failed", "")
    with compiler.compile(graph, dev) as net:
        for s, feed in enumerate(feeds):
            inf = net(ponnx.as_feeds(graph, [feed[n] for n in runtime]))
            print(inf.where())
            for j, got in enumerate(ponnx.as_outputs(graph, inf.outputs)):
                want = data[f"{s}_output_{j}"]
                np.testing.assert_allclose(got, want,
                                           rtol=meta["rtol"], atol=meta["atol"],
                                           err_msg=f"{name} data set {s} output {j}")
    RESULTS[name] = ("passed", "")
