"""`make study`, step 1: train the study's runs on the host (PyTorch, CPU),
export them, quantize them.

    $(scripts/venv.sh bench/requirements.txt) study/train.py [--phase N] [--only NAME ...]
        [--seeds 0 1 2] [--jobs 2] [--log build/study/train.log]

For each run (zoo.Spec x seed) not yet in the cache (build/study/runs/,
keyed by spec, seed, recipe and this code's hash): a PyTorch twin of the
IR graph (torchgraph.GraphNet) is trained with AdamW (peak LR, weight decay
below), a one-cycle schedule, batch 128, random shifts of up to 2 pixels
and horizontal flips, on the recipe's stratified subset for its epochs.
Seeds fix the initial weights (the builder's), the subset order and the
augmentation; one thread per process and deterministic algorithms make the
weights bit for bit reproducible (sha256 in the record).

Export: batch norm folded into the convolutions (pyaccel.compiler.passes),
weights rounded to float16 and kept as float32 (exactly representable both
ways), saved with GraphModel.save as `float.npz`. The host's accuracy is
PyTorch's on exactly that graph, on the 10,000 test images. Then
post-training int8 quantization (pyaccel.quantize, minmax, calibration on
CALIB training images) saved as `int8.npz`, with the golden model's
(pyaccel.reference_int8) predictions on the first GOLDEN test images.
`record.json` holds all of it. Runs go to --jobs worker processes; the log
has progress and an ETA.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import fashion  # noqa: E402
import zoo  # noqa: E402

RUNS = zoo.TOP / "build" / "study" / "runs"
BATCH = 128
LR = 4e-3
WEIGHT_DECAY = 5e-4
SHIFT = 2
CALIB = 256
GOLDEN = 500
CODE = zoo.source_hash("train.py", "torchgraph.py", "nets.py")


def run_dir(run: zoo.Run) -> Path:
    return RUNS / f"{run.id}-{zoo.run_key(run, CODE)}"


def done(run: zoo.Run) -> bool:
    return (run_dir(run) / "record.json").exists()


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, H, W): each image shifted by up to SHIFT pixels (zeros come in)
    and flipped left-right with probability 1/2."""
    from numpy.lib.stride_tricks import sliding_window_view

    n, h, w = x.shape
    padded = np.pad(x, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT)))
    windows = sliding_window_view(padded, (h, w), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * SHIFT + 1, (2, n))
    out = windows[np.arange(n), dy, dx].copy()
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


def as_input(pixels: np.ndarray, input_shape: tuple) -> np.ndarray:
    """Images to a network's input: (N, 1, 28, 28), or (N, 784, 1, 1) for MLPs."""
    x = fashion.to_input(pixels)
    return x.reshape((len(x),) + tuple(input_shape))


def train(run: zoo.Run, x: np.ndarray, y: np.ndarray, log=None):
    import torch
    import torch.nn.functional as F
    from torchgraph import GraphNet

    spec = run.spec
    torch.manual_seed(run.seed)
    rng = np.random.default_rng(run.seed)
    idx = fashion.subset(y, spec.n_train, seed=0)
    x, y = x[idx], y[idx]
    model = spec.build(run.seed)
    net = GraphNet(model.graph, train=True)
    ys = torch.from_numpy(y.astype(np.int64))
    steps = spec.epochs * -(-len(x) // BATCH)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    net.train()
    cl = model.input_shape[1] > 1
    for _ in range(spec.epochs):
        xs = torch.from_numpy(as_input(augment(x, rng), model.input_shape))
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), BATCH):
            b = order[i:i + BATCH]
            xb = xs[b]
            if cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(net(xb), ys[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model, net.eval()


def export(model, net):
    """The trained graph, batch norm folded, weights rounded to float16."""
    from pyaccel.compiler import passes
    from pyaccel.compiler.builder import GraphModel

    g = net.to_graph()
    passes.remove_identities(g)
    passes.fold_batchnorm(g)
    passes.remove_dead(g)
    for k, v in g.constants.items():
        g.constants[k] = v.astype(np.float16).astype(np.float32)
    g.check()
    return GraphModel(g, dict(model.config))


def predict(graph, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    import torch
    from torchgraph import GraphNet

    net = GraphNet(graph).eval()
    with torch.inference_mode():
        return np.concatenate([net(torch.from_numpy(x[i:i + batch])).argmax(1).numpy()
                               for i in range(0, len(x), batch)])


def train_one(run: zoo.Run) -> dict:
    """Train, export, quantize one run into its cache folder; its record."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_tr, y_tr = fashion.load("train")
    x_te, y_te = fashion.load("test")
    t0 = time.monotonic()
    model, net = train(run, x_tr, y_tr)
    seconds = time.monotonic() - t0
    out = run_dir(run)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    xt = as_input(x_te, model.input_shape)
    with torch.inference_mode():
        trained = np.concatenate([net(torch.from_numpy(xt[i:i + 1000])).argmax(1).numpy()
                                  for i in range(0, len(xt), 1000)])
    fm = export(model, net)
    fm.save(tmp / "float.npz")
    host = predict(fm.graph, xt)
    t1 = time.monotonic()
    calib = as_input(x_tr[fashion.subset(y_tr, CALIB, seed=1)], model.input_shape)
    qm = fm.quantize(calib)
    qm.save(tmp / "int8.npz")
    golden = qm.reference(xt[:GOLDEN]).argmax(1)
    qseconds = time.monotonic() - t1
    rec = dict(run=run.id, spec=run.spec.to_dict(), seed=run.seed, code=CODE,
               key=zoo.run_key(run, CODE), n_train=run.spec.n_train, epochs=run.spec.epochs,
               params=model.params, macs=model.macs, n_test=len(y_te),
               host_correct=int((host == y_te).sum()),
               host_accuracy=float((host == y_te).mean()),
               host_accuracy_as_trained=float((trained == y_te).mean()),
               host_predictions="".join(map(str, host)),
               golden_int8_predictions="".join(map(str, golden)),
               golden_int8_correct=int((golden == y_te[:GOLDEN]).sum()),
               sha256=hashlib.sha256((tmp / "float.npz").read_bytes()).hexdigest(),
               train_seconds=round(seconds, 1), quantize_seconds=round(qseconds, 1),
               torch=torch.__version__)
    (tmp / "record.json").write_text(json.dumps(rec, indent=1) + "\n")
    if out.exists():
        import shutil
        shutil.rmtree(out)
    tmp.rename(out)
    return rec


def cost(run: zoo.Run) -> float:
    """A rough relative training cost: images seen x (MACs + per-image overhead)."""
    sp = run.spec
    m = sp.build()
    per_image = m.macs + 60_000 * len(m.graph.nodes)
    if sp.family in ("mobilenet_v1",):
        per_image *= 2.5                    # depthwise convolutions train slowly on the CPU
    return sp.n_train * sp.epochs * per_image


def _worker(run: zoo.Run) -> tuple:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        return run.id, train_one(run), None
    except Exception as e:  # reported by the parent, which carries on
        import traceback
        return run.id, None, traceback.format_exc()


def fmt(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_all(todo: list[zoo.Run], jobs: int, log: Path) -> int:
    """Train the runs on `jobs` processes; progress and ETA to stdout and log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    costs = {r.id: cost(r) for r in todo}
    total = sum(costs.values())
    done_cost, t0, failed = 0.0, time.monotonic(), 0

    def say(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(log, "a") as f:
            f.write(line + "\n")

    say(f"train: {len(todo)} runs on {jobs} processes")
    if not todo:
        return 0
    ctx = mp.get_context("spawn")
    with ctx.Pool(jobs, maxtasksperchild=1) as pool:
        for i, (rid, rec, err) in enumerate(pool.imap_unordered(_worker, todo), 1):
            done_cost += costs[rid]
            el = time.monotonic() - t0
            eta = el * (total - done_cost) / done_cost if done_cost else 0
            if err:
                failed += 1
                say(f"[{i}/{len(todo)}] {rid}: FAILED\n{err}")
                continue
            say(f"[{i}/{len(todo)}] {rid}: {100 * rec['host_accuracy']:.2f}% "
                f"({rec['params']:,} params, {rec['macs'] / 1e6:.2f} MMACs, "
                f"{rec['train_seconds']:.0f} s + {rec['quantize_seconds']:.0f} s int8) "
                f"elapsed {fmt(el)}, ETA {fmt(eta)}")
    return failed


def select(phases=None, only=None, seeds=zoo.SEEDS) -> list[zoo.Run]:
    return [r for r in zoo.runs(seeds) if (not phases or r.spec.phase in phases)
            and (not only or r.spec.name in only)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", type=int, nargs="*")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--seeds", type=int, nargs="*", default=list(zoo.SEEDS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--log", type=Path, default=zoo.TOP / "build" / "study" / "train.log")
    a = ap.parse_args()
    todo = [r for r in select(a.phase, a.only, a.seeds) if not done(r)]
    return 1 if train_all(todo, a.jobs, a.log) else 0


if __name__ == "__main__":
    sys.exit(main())
