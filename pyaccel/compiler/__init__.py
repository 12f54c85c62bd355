"""pyaccel.compiler: a graph compiler for the convaccel device.

Stages, each reading only the one before it:

- ``ir``: the Graph / Node / TensorInfo IR (frontends build it);
- ``builder``: a small layer API over the IR, and the model zoo (``zoo``);
- ``passes``: batch-norm folding, activation fusion, views, constant folding;
- ``plan``: the memory plan (one activation arena, weights apart);
- ``partition``: device or CPU for each node, device segments;
- ``encode``: device segments as lists of Layer2;
- ``runtime``: buffers, submits, CPU nodes in between, statistics.

``compile(graph, device)`` and ``check_report(graph, info=None)`` are the
entry points (pyaccel.compiler.api).
"""
from .ir import Graph, IRError, Node, Quant, TensorInfo  # noqa: F401


def __getattr__(name):
    if name in ("compile", "check_report", "prepare"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'pyaccel.compiler' has no attribute {name!r}")
