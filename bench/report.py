"""The benchmark's results as text tables (also pasted into bench/README.md)."""
from __future__ import annotations

import nets


def _spread(s: dict) -> str:
    return f"{s['median_ms']:.2f} ({s['p10_ms']:.2f}-{s['p90_ms']:.2f})"


def main_table(rows: list[dict]) -> str:
    head = (f"{'network':<34}{'MMACs':>7}{'e2e ms (p10-p90)':>22}{'device ms':>10}"
            f"{'guest CPU ms':>13}{'x CPU':>7}{'torch ms':>9}{'e2e/torch':>10}{'ovh %':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['label']:<34}{r['macs'] / 1e6:>7.0f}{_spread(r['e2e']):>22}"
                     f"{r['device']['median_ms']:>10.2f}{r['cpu']['median_ms']:>13.0f}"
                     f"{r['speedup_vs_guest_cpu']:>7.0f}{r['torch']['median_ms']:>9.2f}"
                     f"{r['e2e_vs_torch']:>10.2f}{100 * r['overhead_share']:>6.0f}")
    return "\n".join(lines)


def split_table(rows: list[dict]) -> str:
    head = f"{'network':<34}{'device':>8}{'driver+DMA':>11}{'py+ioctl':>9}{'e2e':>8}  (ms)"
    lines = [head, "-" * len(head)]
    for r in rows:
        s = r["split_ms"]
        lines.append(f"{r['label']:<34}{s['device']:>8.2f}{s['driver_and_dma']:>11.2f}"
                     f"{s['python_and_ioctls']:>9.2f}{r['e2e']['median_ms']:>8.2f}")
    return "\n".join(lines)


def overhead_table(tiny: dict, modes: dict) -> str:
    z, c = tiny["zero_copy"], tiny["conv2d_copying"]
    lines = [f"tiny job (1x1 conv of one element), {z['n']} runs:",
             f"  compiled/zero-copy submit+wait from Python: median {z['median_ms']:.3f} ms, "
             f"p99 {z['p99_ms']:.3f} ms (driver's submit-to-completion "
             f"{tiny['driver']['median_ms']:.3f} ms, device compute "
             f"{tiny['device']['median_ms']:.3f} ms)",
             f"  Device.conv2d (buffer, copy in/out): median {c['median_ms']:.3f} ms, "
             f"p99 {c['p99_ms']:.3f} ms", ""]
    head = (f"{'network':<34}{'layers':>7}{'chain ms':>10}{'per-layer ms':>13}{'x':>6}"
            f"{'copying ms':>12}{'x':>6}")
    lines += [head, "-" * len(head)]
    for label, m in modes.items():
        lines.append(f"{label:<34}{m['layers']:>7}{m['chain']['median_ms']:>10.2f}"
                     f"{m['per_layer_zero_copy']['median_ms']:>13.2f}"
                     f"{m['per_layer_zero_copy_vs_chain']:>6.2f}"
                     f"{m['per_layer_copying']['median_ms']:>12.2f}"
                     f"{m['per_layer_copying_vs_chain']:>6.2f}")
    return "\n".join(lines)


def layer_table(row: dict) -> str:
    head = f"{row['label']:<16}{'op':>5}{'MMACs':>8}{'device ms':>10}{'torch ms':>9}{'ratio':>7}"
    lines = [head, "-" * len(head)]
    for ly in row["layers"]:
        lines.append(f"{ly['name']:<16}{ly['op'][:5]:>5}{ly['macs'] / 1e6:>8.1f}"
                     f"{ly['device_ms']:>10.3f}{ly['torch_ms']:>9.3f}{ly['device_vs_torch']:>7.2f}")
    dev = sum(ly["device_ms"] for ly in row["layers"])
    tor = sum(ly["torch_ms"] for ly in row["layers"])
    lines.append(f"{'sum':<16}{'':>5}{row['macs'] / 1e6:>8.1f}{dev:>10.3f}{tor:>9.3f}"
                 f"{dev / tor:>7.2f}")
    return "\n".join(lines)


def scaling_table(fits: dict) -> str:
    head = (f"{'family':<14}{'points':>7}{'device: fixed ms':>17}{'GMAC/s':>8}{'resid %':>8}"
            f"{'e2e: fixed ms':>14}{'GMAC/s':>8}{'resid %':>8}")
    lines = [head, "-" * len(head)]
    for family, f in fits.items():
        d, e = f["device"], f["e2e"]
        lines.append(f"{family:<14}{d['points']:>7}{d['intercept_ms']:>17.3f}"
                     f"{d['gmac_per_s'] or 0:>8.1f}{100 * d['median_abs_rel_residual']:>8.0f}"
                     f"{e['intercept_ms']:>14.3f}{e['gmac_per_s'] or 0:>8.1f}"
                     f"{100 * e['median_abs_rel_residual']:>8.0f}")
    return "\n".join(lines)


def targets_table(targets: list[dict]) -> str:
    return "\n".join(f"  {'MET ' if t['met'] else 'MISSED'} {t['what']}: {t['value']:.3g} "
                     f"(target {t['target']})" for t in targets)


def full(results: dict) -> str:
    rows = results["networks"]
    mb = next((r for r in rows if r["label"] == nets.MOBILENET_1.label), None)
    env = results["env"]
    parts = [f"host: {env['host']['cores']} cores, load average {env['host']['loadavg']}; other "
             f"processes used {100 * env.get('other_load_during_guest', 0):.0f}% of the machine "
             f"during the guest run, {100 * env['other_load_during_host']:.0f}% during "
             f"PyTorch's; torch {env['torch']['torch']} with {env['torch']['threads']} threads; "
             f"guest numpy {env['guest']['numpy']}", "",
             "Device (e2e from guest Python) vs guest CPU (float32 numpy) vs host PyTorch:",
             main_table(rows), "", "Where the e2e time goes (medians):", split_table(rows), "",
             overhead_table(results["tiny"], results["modes"]), ""]
    if mb is not None:
        parts += ["Per layer, device compute vs host PyTorch:", layer_table(mb), ""]
    d = results.get("drift")
    if d:
        parts += [f"Drift: {d['label']} on the device first {d['device_first']['median_ms']:.2f} ms"
                  f" (e2e {d['e2e_first']['median_ms']:.2f}), after the guest CPU runs "
                  f"{d['device_after_cpu_runs']['median_ms']:.2f} ms "
                  f"(e2e {d['e2e_after_cpu_runs']['median_ms']:.2f})", ""]
    parts += ["Scaling, time = fixed + MACs / rate (fit on relative errors):",
              scaling_table(results["scaling"]["fits"]), "", "Targets:",
              targets_table(results["targets"])]
    return "\n".join(parts)


def update_readme(path, text: str, begin: str, end: str) -> None:
    """Replace what lies between the begin and end marker lines of a README."""
    old = path.read_text()
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        path.write_text(f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")
