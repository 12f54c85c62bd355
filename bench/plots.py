"""The benchmark's figures (matplotlib, Agg): PNGs in bench/."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis import TARGETS  # noqa: E402

COLORS = {"allconv": "tab:blue", "mobilenet_v1": "tab:orange"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ratios(rows: list[dict], out: Path) -> Path:
    """Speed-up over the guest CPU, and e2e time relative to host PyTorch."""
    labels = [r["label"].replace("-224x3", "").replace("-224", "") for r in rows]
    y = np.arange(len(rows))
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 0.35 * len(rows) + 1.5), sharey=True)
    a.barh(y, [r["speedup_vs_guest_cpu"] for r in rows],
           color=[COLORS[r["family"]] for r in rows])
    a.axvline(TARGETS["speedup_vs_guest_cpu"], color="k", ls="--", lw=1, label="target 100x")
    a.set_xscale("log")
    a.set_xlabel("guest CPU numpy time / device e2e time")
    a.set_title("device vs guest CPU (higher is better)")
    a.set_yticks(y, labels)
    a.invert_yaxis()
    a.legend(loc="lower right")
    h = 0.4
    b.barh(y - h / 2, [r["e2e_vs_torch"] for r in rows], h, label="e2e from guest Python")
    b.barh(y + h / 2, [r["device_vs_torch"] for r in rows], h, label="device compute only")
    b.axvline(TARGETS["e2e_vs_torch"], color="k", ls="--", lw=1,
              label=f"target {TARGETS['e2e_vs_torch']:g}x")
    b.axvline(1, color="grey", lw=0.8)
    b.set_xlabel("time / host PyTorch e2e time (2 threads)")
    b.set_title("device vs host PyTorch (lower is better)")
    b.legend(loc="lower right")
    return _save(fig, out / "ratios.png")


def overhead(rows: list[dict], modes: dict, out: Path) -> Path:
    """Where each network's e2e time goes, and chain vs per-layer vs copying."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 0.35 * len(rows) + 2.5),
                               gridspec_kw=dict(width_ratios=[3, 2]))
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for key, color, label in (("device", "tab:green", "device compute"),
                              ("driver_and_dma", "tab:gray", "driver + device DMA"),
                              ("python_and_ioctls", "tab:red", "Python + ioctl entry/exit")):
        share = np.array([r["split_ms"][key] / r["e2e"]["median_ms"] for r in rows])
        a.barh(y, 100 * share, left=100 * left, color=color, label=label)
        left += share
    a.axvline(100 * (1 - TARGETS["overhead_share"]), color="k", ls="--", lw=1,
              label="10% overhead")
    a.set_yticks(y, [r["label"] for r in rows])
    a.invert_yaxis()
    a.set_xlabel("% of e2e time")
    a.set_title("where the e2e time goes")
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8)
    names = list(modes)
    x = np.arange(len(names))
    w = 0.27
    for i, (key, lab) in enumerate((("chain", "one job, zero-copy"),
                                    ("per_layer_zero_copy", "a job per layer, zero-copy"),
                                    ("per_layer_copying", "a copying call per layer"))):
        b.bar(x + (i - 1) * w, [modes[n][key]["median_ms"] for n in names], w, label=lab)
    b.set_xticks(x, [n.replace("-224x3", "").replace("-224", "") for n in names], fontsize=8)
    b.set_yscale("log")
    b.set_ylabel("e2e ms (median)")
    b.set_title("submission modes")
    b.legend(fontsize=8)
    return _save(fig, out / "overhead.png")


def int8(res: dict, out: Path) -> Path:
    """int8 against float32 (MobileNet-v1 1.0 at 224): e2e of the device in
    both precisions and of the host baselines; device compute per layer."""
    i8 = res["int8"]
    mb = next((r for r in res["networks"] if r["label"] == "mobilenet_v1-1-224"), None)
    bars = [("device int8 e2e", i8["e2e"], "tab:green"),
            ("device int8 compute", i8["device"], "tab:olive"),
            ("onnxruntime int8", i8["onnxruntime"], "tab:purple"),
            ("PyTorch float32", i8["torch_f32"], "tab:blue")]
    if mb:
        bars[2:2] = [("device float32 e2e", mb["e2e"], "tab:orange"),
                     ("device float32 compute", mb["device"], "tab:brown")]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw=dict(width_ratios=[2, 3]))
    y = np.arange(len(bars))
    med = [s["median_ms"] for _, s, _ in bars]
    err = [[m - s["p10_ms"] for (_, s, _), m in zip(bars, med)],
           [s["p90_ms"] - m for (_, s, _), m in zip(bars, med)]]
    a.barh(y, med, xerr=err, color=[c for *_, c in bars])
    a.set_yticks(y, [n for n, *_ in bars])
    a.invert_yaxis()
    a.set_xlabel("ms (median, p10-p90)")
    a.set_title(f"{i8['label']}: int8 vs float32")
    qi = [ly for ly in i8["layers"] if ly["op"] == "conv"]
    if mb:
        qf = [ly for ly in mb["layers"] if ly["op"] == "conv"]
        x = np.arange(min(len(qi), len(qf)))
        b.bar(x - 0.2, [ly["device_ms"] for ly in qf[:len(x)]], 0.4, label="float32")
        b.bar(x + 0.2, [ly["device_ms"] for ly in qi[:len(x)]], 0.4, label="int8")
        b.set_xticks(x, [ly["name"] for ly in qi[:len(x)]], rotation=90, fontsize=7)
    b.set_ylabel("device compute ms (median)")
    b.set_title("per convolution")
    b.legend()
    return _save(fig, out / "int8.png")


def layers(row: dict, out: Path) -> Path:
    """Per-layer device compute time vs host PyTorch for one network."""
    ls = row["layers"]
    x = np.arange(len(ls))
    fig, a = plt.subplots(figsize=(12, 4))
    a.bar(x - 0.2, [ly["device_ms"] for ly in ls], 0.4, label="device compute")
    a.bar(x + 0.2, [ly["torch_ms"] for ly in ls], 0.4, label="host PyTorch")
    a.set_xticks(x, [ly["name"] for ly in ls], rotation=90, fontsize=7)
    a.set_ylabel("ms (median)")
    a.set_title(f"{row['label']}: per layer")
    a.legend()
    return _save(fig, out / "layers.png")


def scaling(sc: dict, out: Path) -> Path:
    """Device and e2e time against MACs, log-log, with the fitted lines."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for a, key in zip(axes, ("device", "e2e")):
        for family, color in COLORS.items():
            pts = [p for p in sc["points"] if p["family"] == family]
            macs = np.array([p["macs"] for p in pts])
            a.scatter(macs, [p[f"{key}_ms"] for p in pts], s=18, color=color, label=family)
            fit = sc["fits"][family][key]
            grid = np.geomspace(macs.min(), macs.max(), 50)
            a.plot(grid, fit["intercept_ms"] + fit["ms_per_gmac"] * grid / 1e9, color=color,
                   lw=1, label=f"{family}: {fit['intercept_ms']:.2f} ms + "
                               f"{fit['ms_per_gmac']:.1f} ms/GMAC")
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("MACs per inference")
        a.set_title({"device": "device compute (device_ns)", "e2e": "e2e from guest Python"}[key])
        a.grid(True, which="both", lw=0.3)
        a.legend(fontsize=7)
    axes[0].set_ylabel("ms (median)")
    return _save(fig, out / "scaling.png")


def all_figures(results: dict, out: Path, main_label: str) -> list[Path]:
    rows = results["networks"]
    extra = list(results.get("zoo") or [])
    if results.get("int8"):
        extra.append(dict(results["int8"], label=results["int8"]["label"] + " int8"))
    paths = [ratios(rows, out), overhead(rows + extra, results["modes"], out),
             scaling(results["scaling"], out)]
    if results.get("int8"):
        paths.append(int8(results, out))
    row = next((r for r in rows if r["label"] == main_label), None)
    if row is not None:
        paths.append(layers(row, out))
    return paths
