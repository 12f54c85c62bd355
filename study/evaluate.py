"""`make study`, step 2: every trained network on the device, against the host.

    $(scripts/venv.sh bench/requirements.txt) study/evaluate.py [--guest-json F]

Boots the board once to run study/guest_eval.py (test-split accuracy and
batch-1 latency on the device, through pyaccel), then checks that the
device's accuracy equals the host's (PyTorch, same exported weights) and
writes study/results.json, the table in study/README.md and the figures
study/accuracy_vs_macs.png and study/latency_vs_width.png. Exits 1 if a
device accuracy differs from the host's.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
sys.path[:0] = [str(HERE), str(TOP / "bench"), str(TOP / "scripts")]
import board  # noqa: E402
import zoo  # noqa: E402
from hostenv import OtherLoad, build, wait_for_quiet  # noqa: E402
from stats import machine  # noqa: E402

import matplotlib  # noqa: E402
import matplotlib.ticker  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

README = HERE / "README.md"
BEGIN, END = "<!-- results: begin (study/evaluate.py) -->", "<!-- results: end -->"


def run_guest(timeout: float) -> dict:
    run_dir = board.BUILD / "study-run"
    (run_dir / "study.json").unlink(missing_ok=True)
    r = board.run("python3 study/guest_eval.py --json /out/study.json", out_dir=run_dir,
                  timeout=timeout, echo=True)
    if not r.ok:
        sys.exit(f"study: the guest run failed (status {r.status}): {r.problems}; "
                 f"console in {run_dir}/console.log")
    return json.loads((run_dir / "study.json").read_text())


def rows(manifest: dict, guest: dict) -> list[dict]:
    out = []
    for name, e in manifest["networks"].items():
        g = guest["networks"].get(name)
        if g is None:
            continue
        out.append(dict(name=name, family=e["family"], width=e["width"], depth=e["depth"],
                        double=e["double"], committed=e["committed"], params=e["params"],
                        macs=e["macs"], host_accuracy=e["host_accuracy"],
                        host_accuracy_float32=e["host_accuracy_float32"],
                        same_accuracy=g["device_correct"] == e["host_correct"],
                        train_seconds=e["train_seconds"], **g))
    return out


def table(rs: list[dict], n_test: int) -> str:
    lines = ["| network | width | depth | doubled | params | MMACs | host acc | device acc | "
             "same | e2e ms | device ms | modelled µs | img/s |",
             "|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rs:
        lines.append(
            f"| {r['name']} | {r['width']:g} | {r['depth'] if r['family'] == 'allconv' else 28}"
            f" | {''.join(map(str, r['double'])) or '-'} | {r['params']:,} "
            f"| {r['macs'] / 1e6:.2f} | {100 * r['host_accuracy']:.2f}% "
            f"| {100 * r['device_accuracy']:.2f}% | {'yes' if r['same_accuracy'] else 'NO'} "
            f"| {r['e2e_ms']:.2f} | {r['device_ms']:.3f} | {1e3 * r['modelled_ms']:.1f} "
            f"| {r['images_per_s']:,.0f} |")
    lines.append(f"\nTest split: {n_test} images. Latency: batch 1, median of the guest's "
                 "calls; img/s: the whole test split in batches of "
                 "120 (study/guest_eval.py). MobileNet's depth is its 28 convolutions.")
    return "\n".join(lines)


def update_readme(text: str) -> None:
    old = README.read_text()
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        README.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")


def _label(r: dict) -> str:
    return r["name"].replace("allconv-", "").replace("mobilenet_v1-", "MNv1 ")


def plot_accuracy(rs: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    groups = {"allconv, width variants": lambda r: r["family"] == "allconv"
              and "depth" not in r["name"],
              "allconv 1/4 width, depths 3-7": lambda r: "depth" in r["name"]
              or r["name"] == "allconv-quarter",
              "MobileNet-v1": lambda r: r["family"] == "mobilenet_v1"}
    for (label, keep), marker in zip(groups.items(), "os^"):
        pts = [r for r in rs if keep(r)]
        ax.scatter([r["macs"] for r in pts], [100 * r["device_accuracy"] for r in pts],
                   marker=marker, label=label, s=40, alpha=0.8)
    for r in rs:
        ax.annotate(_label(r), (r["macs"], 100 * r["device_accuracy"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("MACs per image")
    ax.set_ylabel("test accuracy on the device, %")
    ax.set_title("digits 32x32: accuracy vs compute (one test image = 0.28%)")
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(rs: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharex=True)
    series = {"MobileNet-v1": lambda r: r["family"] == "mobilenet_v1",
              "allconv": lambda r: r["family"] == "allconv" and not r["double"]
              and r["depth"] == 5}
    for d in ("12", "34", "5"):
        series[f"allconv, doubled {d}"] = (lambda d: lambda r: "".join(map(str, r["double"]))
                                           == d)(d)
    for ax, key, title in ((axes[0], "e2e_ms", "e2e from guest Python (batch 1)"),
                           (axes[1], "device_ms", "device compute (device_ns)"),
                           (axes[2], "modelled_ms", "modelled silicon (cycles at 1 GHz)")):
        for label, keep in series.items():
            pts = sorted((r for r in rs if keep(r)), key=lambda r: r["width"])
            ys = [r[key] * (1e3 if key == "modelled_ms" else 1) for r in pts]
            ax.plot([r["width"] for r in pts], ys, "o-" if len(pts) > 2 else "s--", label=label)
        ax.set_xlabel("width multiplier")
        ax.set_ylabel("µs" if key == "modelled_ms" else "ms")
        ax.set_title(title)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", lw=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guest-json", type=Path, help="reuse a guest run's JSON (no boot)")
    ap.add_argument("--quiet-wait", type=float, default=120)
    ap.add_argument("--timeout", type=float, default=900)
    a = ap.parse_args()
    t0 = time.monotonic()
    env: dict = dict(host=machine())
    if a.guest_json:
        guest = json.loads(a.guest_json.read_text())
    else:
        build()
        env["other_load_before"] = wait_for_quiet(a.quiet_wait)
        with OtherLoad() as load:
            guest = run_guest(a.timeout)
        env["other_load_during_guest"] = load.fraction
    manifest = zoo.manifest()
    rs = rows(manifest, guest)
    missing = sorted(set(manifest["networks"]) - {r["name"] for r in rs})
    env["seconds"] = round(time.monotonic() - t0, 1)
    results = dict(env=env, n_test=guest["n_test"], training=dict(
        {k: v for k, v in manifest.items() if k != "networks"}), networks=rs, missing=missing)
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    text = table(rs, guest["n_test"])
    update_readme(text)
    plot_accuracy(rs, HERE / "accuracy_vs_macs.png")
    plot_latency(rs, HERE / "latency_vs_width.png")
    print(text)
    if missing:
        print(f"study: no weights for {', '.join(missing)} (run study/train.py)")
    bad = [r["name"] for r in rs if not r["same_accuracy"]]
    if bad:
        print(f"study: device accuracy differs from the host's for {', '.join(bad)}",
              file=sys.stderr)
        return 1
    print(f"study: the device's accuracy equals the host's for all {len(rs)} networks; "
          "wrote study/results.json, study/README.md's table, study/*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
