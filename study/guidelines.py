"""Claim 9: ShuffleNetV2's guidelines G1 and G2 (Ma et al., 2018, Tables 1-2)
on the device, no training. Runs inside the board (numpy and pyaccel).

    python3 study/guidelines.py [--json /out/guidelines.json] [--repeats N]

G1: 1x1 convolutions at fixed MACs with input:output channels 1:1, 1:2,
1:6, 1:12 (the paper's c1 x c2 = 128 x 128, 90 x 180, 52 x 312, 36 x 432).
G2: 1x1 group convolutions at fixed MACs with g = 1, 2, 4, 8 (c = 128,
180, 256, 360). Each network is the paper's benchmark shape: ten layers
(G1 alternates c1 -> c2 and c2 -> c1), ReLU, on a 56x56 map, batch 1, random
weights. Per network: MACs, the modelled silicon's time (cycles), bytes the
device read and wrote, the device's compute time (emulator, device_ns) and
e2e from guest Python; medians over --repeats calls.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))
from pyaccel.compiler.builder import Builder, GraphModel  # noqa: E402

MAP = 56
LAYERS = 10
G1 = ((1, 128, 128), (2, 90, 180), (6, 52, 312), (12, 36, 432))     # ratio, c1, c2
G2 = ((1, 128), (2, 180), (4, 256), (8, 360))                      # groups, channels
# the paper's Table 1, GPU (GTX 1080Ti) at the c1 x c2 above, batches/s; Table 2
# reports that throughput falls with g at fixed MACs (G2), on the GPU and on ARM
PAPER_G1_GPU = {1: 1480, 2: 1296, 6: 876, 12: 748}


def g1_net(c1: int, c2: int) -> GraphModel:
    b = Builder(f"g1-{c1}x{c2}", (c1, MAP, MAP), seed=0)
    x = b.input
    for i in range(LAYERS):
        x = b.conv(x, c2 if i % 2 == 0 else c1, 1, bn=False, name=f"conv{i}")
    return b.finish(x)


def g2_net(groups: int, c: int) -> GraphModel:
    b = Builder(f"g2-g{groups}-{c}", (c, MAP, MAP), seed=0)
    x = b.input
    for i in range(LAYERS):
        x = b.conv(x, c, 1, groups=groups, bn=False, name=f"conv{i}")
    return b.finish(x)


def measure(dev, model: GraphModel, repeats: int) -> dict:
    x = np.random.default_rng(0).standard_normal((1,) + model.input_shape).astype(np.float32)
    with model.compile(dev, 1) as net:
        for _ in range(2):
            net(x)
        wall, infs = [], []
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            infs.append(net(x))
            wall.append(time.perf_counter_ns() - t0)
    job = infs[-1].job
    return dict(name=model.name, macs=int(model.macs), params=int(model.params),
                modelled_ms=float(infs[-1].modelled_ms), cycles=int(infs[-1].cycles),
                bytes_read=int(job.bytes_read), bytes_written=int(job.bytes_written),
                device_ms=float(np.median([i.device_ns for i in infs])) / 1e6,
                e2e_ms=float(np.median(wall)) / 1e6)


def main() -> int:
    import pyaccel

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path("/out/guidelines.json"))
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    out: dict = dict(map=MAP, layers=LAYERS, repeats=a.repeats, g1=[], g2=[])
    with pyaccel.open() as dev:
        for ratio, c1, c2 in G1:
            r = dict(ratio=ratio, c1=c1, c2=c2, paper_gpu=PAPER_G1_GPU[ratio],
                     **measure(dev, g1_net(c1, c2), a.repeats))
            out["g1"].append(r)
            print(f"[guest] G1 1:{ratio}: model {r['modelled_ms']:.3f} ms, device "
                  f"{r['device_ms']:.2f} ms", flush=True)
        for groups, c in G2:
            r = dict(groups=groups, c=c, **measure(dev, g2_net(groups, c), a.repeats))
            out["g2"].append(r)
            print(f"[guest] G2 g={groups}: model {r['modelled_ms']:.3f} ms, device "
                  f"{r['device_ms']:.2f} ms", flush=True)
    a.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
