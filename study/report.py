"""`make study`, step 3: results.json, the README's claim sections and the
figures, from whatever has been trained and evaluated so far.

    $(scripts/venv.sh bench/requirements.txt) study/report.py [--no-plots]

Reads build/study/runs/*/{record,device}.json (train.py, evaluate.py) and
build/study/guidelines.json; only runs with a device result count (the
accuracy reported is the device's on the 10,000 test images). Per network:
the mean over its seeds with a 95% Student-t interval (stats.py). Each
claim gets a verdict: "holds" or "fails" only where intervals separate,
else "cannot tell"; "not yet run" where its networks have no results.
Writes study/results.json (every number), the blocks between
`<!-- cN: begin -->` and `<!-- cN: end -->` in study/README.md and
study/*.png. Nothing in the README's blocks is typed by hand.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
sys.path[:0] = [str(HERE)]
import stats  # noqa: E402
import zoo  # noqa: E402
from stats import Interval, compare, interval  # noqa: E402

RUNS = TOP / "build" / "study" / "runs"
GUIDELINES = TOP / "build" / "study" / "guidelines.json"
TIMING = TOP / "build" / "study" / "timing.json"
README = HERE / "README.md"
RESULTS = HERE / "results.json"
NOT_RUN = "not yet run"


# --- collecting -------------------------------------------------------------------------

def load_runs() -> list[dict]:
    """One row per trained run with a device result, newest code only."""
    import train

    rows = []
    for rec_path in sorted(RUNS.glob("*/record.json")):
        rec = json.loads(rec_path.read_text())
        if rec.get("code") != train.CODE:
            continue
        dev_path = rec_path.parent / "device.json"
        dev = json.loads(dev_path.read_text()) if dev_path.exists() else None
        row = dict(id=rec["run"], name=rec["spec"]["name"], seed=rec["seed"],
                   params=rec["params"], macs=rec["macs"], n_train=rec["n_train"],
                   epochs=rec["epochs"], host_accuracy=rec["host_accuracy"],
                   host_accuracy_as_trained=rec["host_accuracy_as_trained"],
                   train_seconds=rec["train_seconds"], sha256=rec["sha256"],
                   evaluated=dev is not None)
        if dev is not None:
            f, q = dev["float"], dev["int8"]
            n_g = len(rec["golden_int8_predictions"])
            nq = q.get("n", len(q["predictions"]))
            fq = q.get("float_correct_same_images", f["correct"] * nq / len(f["predictions"]))
            row.update(
                device_accuracy=f["accuracy"], int8_accuracy=q["accuracy"], int8_images=nq,
                float_accuracy_int8_images=fq / nq,
                differs_from_host=sum(a != b for a, b in zip(rec["host_predictions"],
                                                             f["predictions"])),
                int8_differs_from_golden=sum(a != b for a, b in zip(
                    rec["golden_int8_predictions"], q["predictions"][:n_g])),
                golden_images=n_g,
                int8_changed_predictions=sum(a != b for a, b in zip(f["predictions"][:nq],
                                                                    q["predictions"])),
                **{f"{k}": f[k] for k in ("e2e_ms", "device_ms", "modelled_ms", "bytes_read",
                                          "bytes_written", "images_per_s")},
                **{f"int8_{k}": q[k] for k in ("e2e_ms", "device_ms", "modelled_ms",
                                               "bytes_read", "bytes_written")})
        rows.append(row)
    return rows


def aggregate(rows: list[dict]) -> dict[str, dict]:
    """Per network: counts, intervals of accuracy (device), int8 and loss."""
    out: dict[str, dict] = {}
    specs = zoo.by_name()
    for name, spec in specs.items():
        rs = [r for r in rows if r["name"] == name and r["evaluated"]]
        if not rs:
            continue
        rs.sort(key=lambda r: r["seed"])
        med = lambda k: sorted(r[k] for r in rs)[len(rs) // 2]  # noqa: E731
        out[name] = dict(
            spec=spec.to_dict(), seeds=[r["seed"] for r in rs], params=rs[0]["params"],
            macs=rs[0]["macs"],
            accuracy=interval([r["device_accuracy"] for r in rs]).to_dict(),
            int8_accuracy=interval([r["int8_accuracy"] for r in rs]).to_dict(),
            float_accuracy_int8_images=interval([r["float_accuracy_int8_images"]
                                                 for r in rs]).to_dict(),
            int8_loss=interval([r["float_accuracy_int8_images"] - r["int8_accuracy"]
                                for r in rs]).to_dict(),
            int8_images=rs[0]["int8_images"],
            differs_from_host=sum(r["differs_from_host"] for r in rs),
            int8_differs_from_golden=sum(r["int8_differs_from_golden"] for r in rs),
            golden_images=sum(r["golden_images"] for r in rs),
            int8_changed_predictions=[r["int8_changed_predictions"] for r in rs],
            modelled_ms=med("modelled_ms"), device_ms=med("device_ms"), e2e_ms=med("e2e_ms"),
            bytes=med("bytes_read") + med("bytes_written"), images_per_s=med("images_per_s"),
            int8_modelled_ms=med("int8_modelled_ms"), int8_device_ms=med("int8_device_ms"),
            train_seconds=sum(r["train_seconds"] for r in rs))
    return out


def iv(d: dict) -> Interval:
    return Interval(d["mean"], d["lo"], d["hi"], d["n"])


# --- tables -------------------------------------------------------------------------------

def net_table(agg: dict, names: list[str], extra: Optional[dict] = None) -> str:
    """Markdown table of the networks, in order; missing ones say NOT_RUN."""
    extra = extra or {}
    cols = list(extra)
    head = ["network", *cols, "params", "MMACs", "device accuracy %", "seeds",
            "modelled µs", "device ms", "e2e ms"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for n in names:
        ex = [str(extra[c](n)) for c in cols]
        a = agg.get(n)
        if a is None:
            spec = zoo.by_name()[n]
            m = spec.build()
            lines.append(f"| {n} | " + " | ".join(ex + [f"{m.params:,}", f"{m.macs / 1e6:.2f}",
                                                       NOT_RUN, "0", "", "", ""]) + " |")
            continue
        lines.append(f"| {n} | " + " | ".join(ex + [
            f"{a['params']:,}", f"{a['macs'] / 1e6:.2f}", iv(a["accuracy"]).pct(),
            str(len(a["seeds"])), f"{1e3 * a['modelled_ms']:.1f}", f"{a['device_ms']:.3f}",
            f"{a['e2e_ms']:.2f}"]) + " |")
    return "\n".join(lines)


def word(cmp: str) -> str:
    return {"higher": "above", "lower": "below", "overlap": "overlaps"}[cmp]


def pair(agg: dict, a: str, b: str) -> tuple[str, str]:
    """(comparison of a's accuracy with b's, a sentence with both numbers)."""
    ia, ib = iv(agg[a]["accuracy"]), iv(agg[b]["accuracy"])
    c = compare(ia, ib)
    return c, f"{a} {ia.pct()}% vs {b} {ib.pct()}%: {word(c)}"


def have(agg: dict, names: list[str]) -> bool:
    return all(n in agg for n in names)


# --- claims -------------------------------------------------------------------------------

def claim1(agg: dict) -> dict:
    names = [f"allconv-{v}" for v in zoo.nets.models.ALLCONV_VARIANTS]
    table = net_table(agg, names, {
        "width": lambda n: dict(zoo.by_name()[n].info)["width"],
        "doubled": lambda n: dict(zoo.by_name()[n].info)["double"]})
    if not have(agg, names):
        return dict(verdict=NOT_RUN, table=table, details=[])
    details, parts, beats, below = [], [], [], []
    says = {"higher": "holds", "lower": "fails", "overlap": "cannot tell"}
    for d in ("double12", "double34", "double5"):
        n = f"allconv-quarter-{d}"
        c1, s1 = pair(agg, n, "allconv-quarter")
        c2, s2 = pair(agg, n, "allconv-baseline")
        details += [s1, s2]
        beats.append(says[c1])
        below.append({"lower": "holds", "higher": "fails", "overlap": "cannot tell"}[c2])
        ok = c1 == "higher" and c2 == "lower"
        bad = c1 == "lower" or c2 == "higher"
        parts.append("holds" if ok else "fails" if bad else "cannot tell")
    v1 = ("holds" if all(p == "holds" for p in parts) else
          "fails" if any(p == "fails" for p in parts) else "cannot tell")
    halves = []
    for d in ("", "-double12", "-double34", "-double5"):
        c, s = pair(agg, f"allconv-half{d}", "allconv-baseline")
        details.append(s)
        halves.append(c)
    v2 = "holds" if all(c == "overlap" for c in halves) else "fails"
    off = [f"half{d}" for d, c in zip(("", "-double12", "-double34", "-double5"), halves)
           if c != "overlap"]
    return dict(verdict=f"1/4 width: {v1} (doubling 12/34/5 beats plain 1/4: "
                        f"{', '.join(beats)}; stays below the baseline: {', '.join(below)}); "
                        f"1/2 width within noise of the baseline: {v2}"
                        + (f" ({', '.join(off)} separates)" if off else ""),
                table=table, details=details, quarter=parts, half=halves)


def claim2(agg: dict) -> dict:
    names = [f"mobilenet_v1-{w:g}" for w in (1.0, 0.75, 0.5, 0.25)]
    table = net_table(agg, names, {"width": lambda n: dict(zoo.by_name()[n].info)["width"]})
    if not have(agg, names):
        return dict(verdict=NOT_RUN, table=table, details=[])
    steps, details = [], []
    for a, b in zip(names, names[1:]):
        c, s = pair(agg, a, b)
        steps.append(c)
        details.append(s)
    v = ("holds" if all(c == "higher" for c in steps) else
         "fails" if any(c == "lower" for c in steps) else "cannot tell")
    says = {"higher": "falls", "lower": "rises", "overlap": "cannot tell"}
    return dict(verdict=f"{v} (steps 1.0>0.75, 0.75>0.5, 0.5>0.25: "
                        f"{', '.join(says[c] for c in steps)})",
                table=table, details=details, steps=steps)


def claim3(agg: dict) -> dict:
    names = ["mobilenet_v1-0.75", "mobilenet_v1-1-shallow"]
    table = net_table(agg, names, {"width": lambda n: dict(zoo.by_name()[n].info)["width"],
                                   "blocks": lambda n: "13" if "shallow" not in n else
                                   "8 (no 7-11)"})
    if not have(agg, names):
        return dict(verdict=NOT_RUN, table=table, details=[])
    c, s = pair(agg, *names)
    v = {"higher": "holds", "lower": "fails", "overlap": "cannot tell"}[c]
    return dict(verdict=f"{v} (narrower {word(c)} shallower)", table=table, details=[s])


def _depth_vs_base(agg: dict, names: list[str]) -> tuple[str, list[str], list[str]]:
    cs, details = [], []
    for n in names[1:]:
        c, s = pair(agg, n, names[0])
        cs.append(c)
        details.append(s)
    word_of = {"higher": "holds", "lower": "fails", "overlap": "cannot tell"}
    if len(set(cs)) == 1:
        v = word_of[cs[0]]
    else:
        v = ", ".join(f"{word_of[c]} for {n}" for n, c in zip(names[1:], cs))
    return v, cs, details


def claim4(agg: dict) -> dict:
    specs = zoo.SPECS
    mlps = [s.name for s in specs if s.family == "mlp"]
    convs = [s.name for s in specs if "c4" in s.claims and s.family == "allconv"]
    info = lambda k: lambda n: dict(zoo.by_name()[n].info)[k]  # noqa: E731
    table = net_table(agg, mlps + convs, {"kind": info("kind"), "layers": info("depth"),
                                          "width": info("width")})
    out = dict(table=table, details=[])
    verdicts = []
    for label, names in (("fully connected", mlps), ("convolutional", convs)):
        if not have(agg, names):
            verdicts.append(f"{label}: {NOT_RUN}")
            continue
        v, cs, details = _depth_vs_base(agg, names)
        out["details"] += details
        out[label] = cs
        verdicts.append(f"{label}, deeper beats the shallowest: {v}")
    out["verdict"] = "; ".join(verdicts)
    return out


def best_depth(agg: dict, names: list[str]) -> tuple[str, list[str]]:
    """The network with the best mean, and those whose interval overlaps it."""
    best = max(names, key=lambda n: agg[n]["accuracy"]["mean"])
    tied = [n for n in names if compare(iv(agg[n]["accuracy"]), iv(agg[best]["accuracy"]))
            == "overlap"]
    return best, tied


def claim5(agg: dict) -> dict:
    depths = (3, 4, 5, 6, 7)
    full = [f"depth{d}-full2" for d in depths]
    small = [f"depth{d}-small20" for d in depths]
    lines = ["| depth | params | MMACs | 60,000 images (2 epochs) % | 6,000 images (20 epochs) % |",
             "|---:|---:|---:|---:|---:|"]
    for d, f, s in zip(depths, full, small):
        m = zoo.by_name()[f].build()
        cell = lambda n: iv(agg[n]["accuracy"]).pct() if n in agg else NOT_RUN  # noqa: E731
        lines.append(f"| {d} | {m.params:,} | {m.macs / 1e6:.2f} | {cell(f)} | {cell(s)} |")
    table = "\n".join(lines)
    if not have(agg, full + small):
        return dict(verdict=NOT_RUN, table=table, details=[])
    bf, tf = best_depth(agg, full)
    bs, ts = best_depth(agg, small)
    df, ds = int(bf[5]), int(bs[5])
    at_small = compare(iv(agg[bs]["accuracy"]), iv(agg[f"depth{df}-small20"]["accuracy"]))
    if ds < df and at_small == "higher":
        v = "holds"
    elif ds >= df and all(compare(iv(agg[f"depth{df}-small20"]["accuracy"]),
                                  iv(agg[f"depth{d}-small20"]["accuracy"])) == "higher"
                          for d in depths if d < df):
        v = "fails"
    else:
        v = "cannot tell"
    details = [f"best depth with 60,000 images: {df} (within noise of it: "
               f"{', '.join(n[5] for n in tf)}); with 6,000: {ds} (within noise: "
               f"{', '.join(n[5] for n in ts)})"]
    return dict(verdict=f"{v} (best depth {df} -> {ds})", table=table, details=details,
                best_full=df, best_small=ds, tied_full=[int(n[5]) for n in tf],
                tied_small=[int(n[5]) for n in ts])


def claim6(agg: dict) -> dict:
    names = [s.name for s in zoo.SPECS if "c6" in s.claims]
    info = lambda k: lambda n: dict(zoo.by_name()[n].info)[k]  # noqa: E731
    table = net_table(agg, names, {"depth": info("depth"), "k": info("k")})
    if not have(agg, names):
        return dict(verdict=NOT_RUN, table=table, details=[])
    thin, wide = names
    c, s = pair(agg, wide, thin)
    v = {"higher": "holds", "lower": "fails", "overlap": "cannot tell"}[c]
    t = [f"{k}: wide {agg[wide][k]:.3f} vs thin {agg[thin][k]:.3f} ms" for k in
         ("modelled_ms", "device_ms", "e2e_ms")]
    faster = "holds" if agg[wide]["modelled_ms"] < agg[thin]["modelled_ms"] else "fails"
    return dict(verdict=f"wide-shallow more accurate: {v}; faster on the modelled silicon "
                        f"(deterministic, no seed spread): {faster}",
                table=table, details=[s] + t)


def first_names() -> list[tuple[int, str]]:
    out = [(dict(s.info)["first"], s.name) for s in zoo.SPECS if s.name.startswith("first")]
    return sorted(out + [(8, "depth5-full2")])


def claim7(agg: dict) -> dict:
    fs = first_names()
    names = [n for _, n in fs]
    table = net_table(agg, names, {"first layer": lambda n: dict(fs)[n] if False else
                                   {v: k for k, v in fs}[n]})
    if not have(agg, names):
        return dict(verdict=NOT_RUN, table=table, details=[])
    acc = {w: iv(agg[n]["accuracy"]) for w, n in fs}
    ws = [w for w, _ in fs]
    above = {w: [u for u in ws if u < w and compare(acc[w], acc[u]) == "higher"] for w in ws}
    top = {w: not any(compare(acc[u], acc[w]) == "higher" for u in ws if u > w) for w in ws}
    stop = next((w for w in ws if top[w] and above[w]), None)
    details = [f"{n} ({w} channels): {acc[w].pct()}%"
               + (f"; significantly above {', '.join(map(str, above[w]))}" if above[w] else "")
               for w, n in fs]
    v = (f"accuracy stops rising at {stop} channels: it is significantly above "
         f"{', '.join(map(str, above[stop]))} and no wider first layer is significantly "
         f"better" if stop else "cannot tell: no first-layer width is significantly better "
         f"than a narrower one")
    return dict(verdict=v, table=table, details=details, stops_at=stop)


WIDTH_FAMILIES = {
    "allconv": [("allconv-quarter", 0.25), ("allconv-half", 0.5), ("allconv-baseline", 1.0)],
    "MobileNet-v1": [(f"mobilenet_v1-{w:g}", w) for w in (0.25, 0.5, 0.75, 1.0)],
    "allconv 1/4, first layer only (its channels / 32)": [
        ("first4", 4 / 32), ("depth5-full2", 8 / 32), ("first16", 16 / 32),
        ("first32", 32 / 32), ("first64", 64 / 32)],
}


def claim8(agg: dict) -> dict:
    lines = ["| network | params | float32 % | int8 % | int8 loss (points) | int8 != golden | "
             "predictions changed by int8 | modelled µs float / int8 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in zoo.SPECS:
        a = agg.get(s.name)
        if a is None:
            lines.append(f"| {s.name} | | {NOT_RUN} | | | | | |")
            continue
        loss = iv(a["int8_loss"])
        lines.append(
            f"| {s.name} | {a['params']:,} | {iv(a['float_accuracy_int8_images']).pct()} | "
            f"{iv(a['int8_accuracy']).pct()} | {loss.pct()} | "
            f"{a['int8_differs_from_golden']} of {a['golden_images']} | "
            f"{', '.join(map(str, a['int8_changed_predictions']))} | "
            f"{1e3 * a['modelled_ms']:.1f} / {1e3 * a['int8_modelled_ms']:.1f} |")
    n8 = sorted({a["int8_images"] for a in agg.values()})
    lines.append(f"\nfloat32 and int8 here: the device's, on "
                 f"{', '.join(f'{n:,}' for n in n8) or 'N'} test images (all of them), "
                 f"paired by seed; int8 != golden: predictions of the first "
                 f"500 that differ from pyaccel.reference_int8's, over all seeds; changed: per "
                 f"seed, predictions that int8 changed.")
    table = "\n".join(lines)
    if not agg:
        return dict(verdict=NOT_RUN, table=table, details=[])
    golden = sum(a["int8_differs_from_golden"] for a in agg.values())
    images = sum(a["golden_images"] for a in agg.values())
    verdicts, details = [], []
    for fam, members in WIDTH_FAMILIES.items():
        names = [n for n, _ in members]
        if not have(agg, names):
            verdicts.append(f"{fam}: {NOT_RUN}")
            continue
        narrow, wide = iv(agg[names[0]]["int8_loss"]), iv(agg[names[-1]]["int8_loss"])
        c = compare(narrow, wide)
        details.append(f"{fam}: loss at width {members[0][1]:g} {narrow.pct()} points vs "
                       f"{members[-1][1]:g} {wide.pct()}: {word(c)}")
        verdicts.append(f"{fam}, narrow loses more: "
                        + {"higher": "holds", "lower": "fails", "overlap": "cannot tell"}[c])
    worst = max(agg, key=lambda n: agg[n]["int8_loss"]["mean"])
    details.append(f"largest mean loss: {worst} {iv(agg[worst]['int8_loss']).pct()} points")
    return dict(verdict="; ".join(verdicts) + f"; device int8 predictions differ from the "
                f"golden model's in {golden} of {images}", table=table, details=details,
                int8_differs_from_golden=golden, golden_images=images)


def claim9() -> dict:
    if not GUIDELINES.exists():
        return dict(verdict=NOT_RUN, table="", details=[])
    g = json.loads(GUIDELINES.read_text())
    lines = ["| guideline | shape | MMACs | modelled µs | KB moved | device ms | e2e ms | "
             "paper GPU batches/s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in g["g1"]:
        lines.append(f"| G1 1:{r['ratio']} | {r['c1']}x{r['c2']} | {r['macs'] / 1e6:.1f} | "
                     f"{1e3 * r['modelled_ms']:.0f} | "
                     f"{(r['bytes_read'] + r['bytes_written']) / 1e3:,.0f} | "
                     f"{r['device_ms']:.2f} | {r['e2e_ms']:.2f} | {r['paper_gpu']} |")
    for r in g["g2"]:
        lines.append(f"| G2 g={r['groups']} | c={r['c']} | {r['macs'] / 1e6:.1f} | "
                     f"{1e3 * r['modelled_ms']:.0f} | "
                     f"{(r['bytes_read'] + r['bytes_written']) / 1e3:,.0f} | "
                     f"{r['device_ms']:.2f} | {r['e2e_ms']:.2f} | falls with g |")
    table = "\n".join(lines)

    def trend(rows: list, key: str) -> str:
        v = [r[key] for r in rows]
        if all(a < b for a, b in zip(v, v[1:])):
            return "rises steadily"
        if v[0] == min(v):
            return "lowest at the first, not monotone"
        return "not lowest at the first"
    out = {}
    for gk, label in (("g1", "G1 (equal channel widths are fastest)"),
                      ("g2", "G2 (more groups are slower)")):
        rows = g[gk]
        out[gk] = {k: trend(rows, k) for k in ("modelled_ms", "device_ms", "e2e_ms")}
    v = []
    for gk, name in (("g1", "G1"), ("g2", "G2")):
        m = out[gk]["modelled_ms"]
        says = "holds" if m == "rises steadily" else "fails" if "not lowest" in m else "partly"
        v.append(f"{name} on the modelled silicon: {says}"
                 f" (time {m}); emulator time {out[gk]['device_ms']}")
    return dict(verdict="; ".join(v), table=table, details=[], trends=out, data=g)


CLAIM_FUNCS: dict[str, Callable[[dict], dict]] = {
    "c1": claim1, "c2": claim2, "c3": claim3, "c4": claim4, "c5": claim5, "c6": claim6,
    "c7": claim7, "c8": claim8, "c9": lambda agg: claim9()}


# --- figures ------------------------------------------------------------------------------

FAMILY_OF = {"c1": "allconv width variants", "c2": "MobileNet-v1", "c3": "MobileNet-v1",
             "c4": "matched-parameter MLP / conv", "c5": "allconv 1/4, depth 3-7",
             "c6": "ResNet / WRN", "c7": "allconv 1/4, first layer"}


def save_figure(fig, name: str) -> str:
    """Lay out `fig`, write it as study/<name> (100 dpi) and close it;
    returns name."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(HERE / name, dpi=100)
    plt.close(fig)
    return name


def plots(agg: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def err(n: str, key: str = "accuracy") -> tuple[float, float]:
        i = iv(agg[n][key])
        return 100 * i.mean, 100 * (i.half if i.n > 1 else 0)

    # 1. accuracy against MACs, parameters, modelled and device latency
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    groups: dict[str, list[str]] = {}
    for s in zoo.SPECS:
        if s.name in agg and not s.name.endswith("small20"):
            groups.setdefault(FAMILY_OF[s.claims[0]], []).append(s.name)
    for ax, key, label in ((axes[0, 0], "macs", "MACs per image"),
                           (axes[0, 1], "params", "parameters"),
                           (axes[1, 0], "modelled_ms", "modelled latency, batch 1 (ms)"),
                           (axes[1, 1], "device_ms", "emulated device's compute, batch 1 (ms)")):
        for (g, names), marker in zip(groups.items(), "os^vDP<>"):
            xs = [agg[n][key] for n in names]
            ys, es = zip(*(err(n) for n in names))
            ax.errorbar(xs, ys, yerr=es, fmt=marker, label=g, ms=5, capsize=2, alpha=0.85)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy on the device, % (mean, 95%)")
        ax.grid(True, which="both", lw=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Fashion-MNIST, 10,000 test images on the device")
    written.append(save_figure(fig, "accuracy_vs_cost.png"))

    # 2. accuracy against depth at both data sizes
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for suffix, label in (("full2", "60,000 images, 2 epochs"),
                          ("small20", "6,000 images, 20 epochs")):
        pts = [(d, f"depth{d}-{suffix}") for d in (3, 4, 5, 6, 7) if f"depth{d}-{suffix}" in agg]
        if pts:
            ys, es = zip(*(err(n) for _, n in pts))
            ax.errorbar([d for d, _ in pts], ys, yerr=es, fmt="o-", capsize=3, label=label)
    ax.set_xlabel("depth (3x3 conv layers; allconv at 1/4 width)")
    ax.set_ylabel("device test accuracy, % (mean, 95%)")
    ax.grid(True, lw=0.3)
    ax.legend()
    written.append(save_figure(fig, "accuracy_vs_depth.png"))

    # 3. the first layer's width
    fs = [(w, n) for w, n in first_names() if n in agg]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if fs:
        ys, es = zip(*(err(n) for _, n in fs))
        ax.errorbar([w for w, _ in fs], ys, yerr=es, fmt="o-", capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("channels of the first layer (the rest: allconv at 1/4 width)")
    ax.set_ylabel("device test accuracy, % (mean, 95%)")
    ax.grid(True, which="both", lw=0.3)
    written.append(save_figure(fig, "first_layer_width.png"))

    # 4. int8 loss against width
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for fam, members in WIDTH_FAMILIES.items():
        pts = [(w, n) for n, w in members if n in agg]
        if pts:
            ys, es = zip(*(err(n, "int8_loss") for _, n in pts))
            ax.errorbar([w for w, _ in pts], ys, yerr=es, fmt="o-", capsize=3, label=fam)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("width multiplier")
    ax.set_ylabel("float32 - int8 accuracy, points (mean, 95%)")
    ax.grid(True, lw=0.3)
    ax.legend()
    written.append(save_figure(fig, "int8_loss_vs_width.png"))
    return written


# --- README -------------------------------------------------------------------------------

def block(cid: str, c: dict) -> str:
    text = [f"**Verdict: {c['verdict']}.**", ""]
    if c.get("table"):
        text += [c["table"], ""]
    for d in c.get("details", []):
        text.append(f"- {d}")
    return "\n".join(text).rstrip()


def summary(claims: dict, agg: dict, rows: list[dict]) -> str:
    n_eval = sum(r["evaluated"] for r in rows)
    lines = [f"{n_eval} runs evaluated on the device ({len(agg)} of {len(zoo.SPECS)} networks; "
             f"{len(zoo.runs())} runs planned), each on all 10,000 test images. Device float32 "
             f"predictions that differ from the host's: "
             f"{sum(r.get('differs_from_host', 0) for r in rows)}.", "",
             "| claim | verdict |", "|---|---|"]
    for cid, title in zoo.CLAIMS.items():
        lines.append(f"| {cid[1:]}. {title} | {claims[cid]['verdict']} |")
    return "\n".join(lines)


def timing_block(rows: list[dict]) -> tuple[str, dict]:
    t = json.loads(TIMING.read_text()) if TIMING.exists() else {}
    runs = t.get("invocations", [])
    core = sum(r["train_seconds"] for r in rows)
    lines = [f"Training time summed over the {len(rows)} trained runs: {core / 60:.0f} "
             f"core-minutes (one thread each; quantization and the golden model's check "
             f"not included)."]
    if runs:
        wall = sum(r["wall_s"] for r in runs)
        lines += ["", f"The last study, from an empty cache to the report: {wall / 60:.0f} min "
                      f"wall in {len(runs)} `make study` invocation(s) "
                      f"({', '.join(r['started'] for r in runs)}; "
                      f"{runs[-1]['jobs']} training processes).", "",
                  "| invocation | phase | runs trained | training min | device evaluation min |",
                  "|---:|---:|---:|---:|---:|"]
        for i, r in enumerate(runs, 1):
            for p, v in r["phases"].items():
                lines.append(f"| {i} | {p} | {v['runs']} | {v['train_s'] / 60:.1f} | "
                             f"{v['evaluate_s'] / 60:.1f} |")
    return "\n".join(lines), t


def update_readme(blocks: dict[str, str]) -> None:
    text = README.read_text()
    for key, body in blocks.items():
        begin, end = f"<!-- {key}: begin -->", f"<!-- {key}: end -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}"
    README.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-plots", action="store_true")
    a = ap.parse_args()
    rows = load_runs()
    agg = aggregate(rows)
    claims = {cid: f(agg) for cid, f in CLAIM_FUNCS.items()}
    for cid, c in claims.items():
        names = [sp.name for sp in zoo.SPECS if cid in sp.claims]
        seeds = [len(agg[n]["seeds"]) if n in agg else 0 for n in names]
        c["seeds"] = dict(zip(names, seeds))
        if names and c["verdict"] != NOT_RUN and min(seeds) < len(zoo.SEEDS):
            c["verdict"] = (f"incomplete, {min(seeds)} of {len(zoo.SEEDS)} seeds for some "
                            f"networks so far: {c['verdict']}")
    results = dict(generated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                   recipes={k: dict(images=v[0], epochs=v[1]) for k, v in zoo.RECIPES.items()},
                   seeds=list(zoo.SEEDS), t95=stats.T95,
                   runs=rows, networks=agg,
                   claims={k: {kk: vv for kk, vv in v.items() if kk != "table"}
                           for k, v in claims.items()},
                   train_seconds=round(sum(r["train_seconds"] for r in rows), 1))
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    blocks = {cid: block(cid, c) for cid, c in claims.items()}
    blocks["summary"] = summary(claims, agg, rows)
    blocks["time"], results["timing"] = timing_block(rows)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    update_readme(blocks)
    written = [] if a.no_plots or not agg else plots(agg)
    print(f"report: {len(agg)} networks, {sum(r['evaluated'] for r in rows)} runs evaluated; "
          f"wrote {RESULTS.relative_to(TOP)}, README blocks, {', '.join(written) or 'no plots'}")
    for cid, c in claims.items():
        print(f"  {cid}: {c['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
