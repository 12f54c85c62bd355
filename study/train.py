"""`make study`, step 1: train the study's networks on the host (PyTorch, CPU).

    $(scripts/venv.sh bench/requirements.txt) study/train.py [--only NAME ...] [--epochs N]

For every network of study/zoo.py, with fixed seeds: a PyTorch twin whose
state_dict uses pyaccel's weight names (bench/torchnet.py; batch norm where
the network has it) is trained on the 8x8 digits upscaled to 32x32
(study/digits.py): AdamW with a one-cycle learning rate (RECIPE), 40
epochs of batch 64, random shifts of up to 2 pixels. Then pyaccel folds its
state_dict (graph.fold: the names must match) and it is saved as float16
npz; the host's accuracy on the test split is measured on exactly those
exported weights (and, for reference, on the float32 network as trained).

Writes study/weights/*.npz (the committed networks), build/study/weights/
(the others), study/weights/manifest.json and the test split
study/digits_test.npz.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bench"))
import digits  # noqa: E402
import zoo  # noqa: E402
from torchnet import TorchNet, inference_twin, raw_weights  # noqa: E402

from pyaccel import graph  # noqa: E402

SEED = 0
BATCH = 64
SHIFT = 2
EPOCHS = 40
# AdamW's peak learning rate and weight decay; batch norm (MobileNet) takes more
RECIPE = {"allconv": dict(lr=4e-3, weight_decay=1e-4),
          "mobilenet_v1": dict(lr=2e-2, weight_decay=5e-4)}


def shifted(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each uint8 image moved by up to SHIFT pixels in x and y (zeros come in)."""
    n, h, w = x.shape
    padded = np.pad(x, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT)))
    windows = sliding_window_view(padded, (h, w), axis=(1, 2))   # n, dy, dx, h, w
    dy, dx = rng.integers(0, 2 * SHIFT + 1, (2, n))
    return windows[np.arange(n), dy, dx]


def train(spec: zoo.Spec, x: np.ndarray, y: np.ndarray, epochs: int, lr: float,
          weight_decay: float) -> TorchNet:
    """AdamW with a one-cycle schedule; every epoch sees freshly shifted images."""
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    net = TorchNet(spec.build(), batch_norm=True).to(memory_format=torch.channels_last)
    ys = torch.from_numpy(y.astype(np.int64))
    steps = epochs * -(-len(x) // BATCH)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for _ in range(epochs):
        xs = torch.from_numpy(digits.to_input(shifted(x, rng)))
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            xb = xs[idx].contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(net.logits(xb), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.inference_mode()
def predict(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    return net(torch.from_numpy(digits.to_input(x))).argmax(1).numpy()


def export(spec: zoo.Spec, net: TorchNet) -> dict[str, np.ndarray]:
    """pyaccel folds the trained state_dict (names checked), then float16."""
    model = spec.build()
    folded = graph.fold(model.ops, raw_weights(net))
    return {k: v.astype(np.float16) for k, v in folded.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="train only these networks (names in zoo.py)")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    x_tr, y_tr, x_te, y_te = digits.load_splits()
    digits.save_test(x_te, y_te)
    old = zoo.manifest() if zoo.MANIFEST.exists() else {}
    manifest = dict(old, test_file=str(digits.TEST_FILE.relative_to(zoo.TOP)),
                    n_train=len(y_tr), n_test=len(y_te), epochs=a.epochs, recipe=RECIPE,
                    batch=BATCH, seed=SEED, torch=torch.__version__, threads=a.threads)
    nets = manifest.setdefault("networks", {})
    t_all = time.monotonic()
    for spec in zoo.SPECS:
        if a.only and spec.name not in a.only:
            continue
        t0 = time.monotonic()
        net = train(spec, x_tr, y_tr, a.epochs, **RECIPE[spec.family])
        seconds = time.monotonic() - t0
        weights = export(spec, net)
        spec.weights_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(spec.weights_path, **weights)
        model = spec.build()
        model.weights = {k: v.astype(np.float32) for k, v in weights.items()}
        exported = predict(inference_twin(model), x_te)
        trained = predict(net, x_te)
        nets[spec.name] = dict(
            spec.to_dict(), weights=str(spec.weights_path.relative_to(zoo.TOP)),
            sha256=hashlib.sha256(spec.weights_path.read_bytes()).hexdigest(),
            bytes=spec.weights_path.stat().st_size, params=model.params, macs=model.macs,
            host_correct=int((exported == y_te).sum()),
            host_accuracy=float((exported == y_te).mean()),
            host_accuracy_float32=float((trained == y_te).mean()),
            host_predictions="".join(map(str, exported)), train_seconds=round(seconds, 1))
        print(f"{spec.name:<28} {model.params:>9,} params {model.macs / 1e6:>7.2f} MMACs  "
              f"accuracy {100 * nets[spec.name]['host_accuracy']:.2f}% (float32 "
              f"{100 * nets[spec.name]['host_accuracy_float32']:.2f}%)  {seconds:.1f} s",
              flush=True)
    manifest["train_seconds"] = round(time.monotonic() - t_all, 1)
    zoo.MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    zoo.MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    committed = sum(v["bytes"] for v in nets.values() if v["committed"])
    print(f"wrote {zoo.MANIFEST.relative_to(zoo.TOP)}; committed weights {committed / 1e6:.2f} MB;"
          f" training {manifest['train_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
