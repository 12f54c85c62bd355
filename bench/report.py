"""The benchmark's results as text tables (also pasted into bench/README.md)."""
from __future__ import annotations

import nets


def _spread(s: dict) -> str:
    return f"{s['median_ms']:.2f} ({s['p10_ms']:.2f}-{s['p90_ms']:.2f})"


def _latency_lines(rows: list[dict], width: int, guest_cpu: bool) -> list[str]:
    """Header, rule and one line a network: MACs, e2e, device, (with
    guest_cpu: the guest CPU's time and the device's speedup over it), torch,
    e2e / torch, overhead; the network's label `width` characters wide."""
    cpu_head = f"{'guest CPU ms':>13}{'x CPU':>7}" if guest_cpu else ""
    head = (f"{'network':<{width}}{'MMACs':>7}{'e2e ms (p10-p90)':>22}{'device ms':>10}"
            f"{cpu_head}{'torch ms':>9}{'e2e/torch':>10}{'ovh %':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        cpu = (f"{r['cpu']['median_ms']:>13.0f}{r['speedup_vs_guest_cpu']:>7.0f}"
               if guest_cpu else "")
        lines.append(f"{r['label']:<{width}}{r['macs'] / 1e6:>7.0f}{_spread(r['e2e']):>22}"
                     f"{r['device']['median_ms']:>10.2f}{cpu}{r['torch']['median_ms']:>9.2f}"
                     f"{r['e2e_vs_torch']:>10.2f}{100 * r['overhead_share']:>6.0f}")
    return lines


def main_table(rows: list[dict]) -> str:
    return "\n".join(_latency_lines(rows, 34, guest_cpu=True))


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


def analysis_max_load() -> float:
    from analysis import MAX_OTHER_LOAD

    return MAX_OTHER_LOAD


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def _ms(v) -> str:
    if not v:
        return ""
    return f"{v[0]:.2f}" + (f" ({v[1]:.2f}-{v[2]:.2f})" if len(v) == 3 else "")


def targets_table(targets: list[dict]) -> str:
    """Issue #15's table: figure, measured, target, met; then what each ratio
    is of (medians and p10-p90 in ms)."""
    head = f"{'figure':<76}{'value':>8}  {'target':<8}{'':>7}"
    lines = [head, "-" * len(head)]
    for t in targets:
        met = "-" if t["met"] is None else ("MET" if t["met"] else "MISSED")
        if t.get("valid") is False:
            met += "*"
        lines.append(f"{t['what'][:76]:<76}{_fmt(t['value']):>8}  {t['target']:<8}{met:>8}")
    busy = [t for t in targets if t.get("valid") is False]
    if busy:
        lines += ["", f"* not a valid comparison: other processes used up to "
                      f"{100 * max(t['other_load'] for t in busy):.0f}% of the machine while "
                      "it was measured (limit "
                      f"{100 * analysis_max_load():.0f}%; measure again on a quiet machine)"]
    lines += ["", "of (median ms, p10-p90):"]
    for t in targets:
        if t.get("num_ms"):
            den = f" / {_ms(t['den_ms'])}" if t.get("den_ms") else ""
            lines.append(f"  {t['key']:<28}{_ms(t['num_ms'])}{den}")
    return "\n".join(lines)


def zoo_table(rows: list[dict], int8: dict | None, batch: dict | None) -> str:
    lines = _latency_lines(rows, 28, guest_cpu=False)
    if int8:
        lines += ["", f"int8 {int8['label']} (pyaccel.quantize; device == golden model bit for "
                      f"bit: {int8['bit_exact_vs_golden']}):",
                  f"  device e2e {_spread(int8['e2e'])} ms, device compute "
                  f"{int8['device']['median_ms']:.2f} ms (MobileNet-v1 1.0 float32 on the "
                  f"device: e2e {_fmt(int8['f32_e2e_ms'])}, compute "
                  f"{_fmt(int8['f32_device_ms'])} ms)",
                  f"  host PyTorch float32 {_spread(int8['torch_f32'])} ms: int8 e2e / torch "
                  f"{int8['e2e_vs_torch']:.2f}",
                  f"  host onnxruntime {int8['onnxruntime_version']} int8 (QDQ) "
                  f"{_spread(int8['onnxruntime'])} ms: int8 e2e / onnxruntime "
                  f"{int8['vs_onnxruntime']:.2f} (device compute alone "
                  f"{int8['device_vs_onnxruntime']:.2f})"]
    if batch:
        lines += ["", f"batch {batch['batch']} {batch['label']}: device e2e "
                      f"{_spread(batch['e2e'])} ms ({batch['images_per_s']:.0f} images/s), "
                      f"PyTorch {_spread(batch['torch'])} ms ({batch['torch_images_per_s']:.0f}"
                      f" images/s): throughput ratio {batch['throughput_vs_torch']:.2f}"]
    return "\n".join(lines)


def gap_table(gap: dict) -> str:
    head = (f"{'layer':<14}{'shape':<30}{'QEMU ms':>9}{'chain ms':>9}{'ratio':>7}"
            f"{'hot ms':>8}{'ratio':>7}")
    lines = [f"The device's compute inside QEMU vs the same layers through "
             f"{gap['library'].rsplit('/', 1)[-1]} on the host ({gap['threads']} threads, "
             f"OpenBLAS {gap['openblas_core']}, the device's activations). chain: the layers "
             "one after the other as in the network; hot: each layer repeated alone "
             "(make bench-device's way, warm caches):", head, "-" * len(head)]
    for r in gap["layers"]:
        lines.append(f"{r['name']:<14}{r['shape']:<30}{r['qemu_ms']:>9.3f}"
                     f"{r['library_ms']:>9.3f}{r['ratio']:>7.2f}{r['hot_ms']:>8.3f}"
                     f"{r['ratio_hot']:>7.2f}")
    lines.append(f"{'sum':<14}{'':<30}{gap['qemu_ms']:>9.3f}{gap['library_ms']:>9.3f}"
                 f"{gap['ratio']:>7.2f}{gap['hot_ms']:>8.3f}{gap['ratio_hot']:>7.2f}")
    return "\n".join(lines)


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
    if results.get("zoo") or results.get("int8") or results.get("batch"):
        parts += ["Graph compiler (hardware 2.0 jobs), int8 and batch:",
                  zoo_table(results.get("zoo", []), results.get("int8"), results.get("batch")),
                  ""]
    if results.get("library_gap"):
        parts += [gap_table(results["library_gap"]), ""]
    parts += ["Scaling, time = fixed + MACs / rate (fit on relative errors):",
              scaling_table(results["scaling"]["fits"]), "",
              "Targets (issue #15), from this run:", targets_table(results["targets"])]
    return "\n".join(parts)


def update_readme(path, text: str, begin: str, end: str) -> None:
    """Replace what lies between the begin and end marker lines of a README."""
    old = path.read_text()
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        path.write_text(f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")


SUMMARY_BEGIN, SUMMARY_END = ("<!-- bench summary: begin (bench/bench.py) -->",
                              "<!-- bench summary: end -->")


def _mdv(t: dict) -> str:
    v = t["value"]
    if v is None:
        return "not measured"
    num, den = t.get("num_ms"), t.get("den_ms")
    if t["key"] == "tiny_job_ms":
        return f"{v:.3f} ms (p10-p90 {num[1]:.3f}-{num[2]:.3f})"
    if t["key"] == "overhead_share":
        return f"{100 * v:.0f}%"
    if num and den and len(num) == 3 and len(den) == 3:
        return (f"{v:.2f}x ({num[0]:.2f} ms, p10-p90 {num[1]:.2f}-{num[2]:.2f}, vs "
                f"{den[0]:.2f} ms, {den[1]:.2f}-{den[2]:.2f})")
    if num and den:
        return f"{v:.2f}x ({num[0]:.2f} ms vs {den[0]:.2f} ms)"
    return f"{v:.3g}"


def summary_md(results: dict) -> str:
    """The targets of the latest run as a markdown table, with the run's
    machine state: pasted into README.md and bench/README.md by bench.py."""
    env = results["env"]
    lines = [f"Measured by `make bench` on {env['host']['cores']} cores, load average "
             f"{env['host']['loadavg']} at the start; other processes used "
             f"{100 * env.get('other_load_during_guest', 0):.0f}% of the machine during the "
             f"guest run and {100 * env['other_load_during_host']:.0f}% during the host's "
             f"(PyTorch {env['torch']['torch']}, {env['torch']['threads']} threads); every "
             "ratio is between two numbers of this one run (medians, p10-p90). A ratio "
             f"measured while other processes used more than {100 * analysis_max_load():.0f}% "
             "of the machine is marked not valid: PyTorch's threads lose far more than the "
             "device on shared cores.", "",
             "| figure | measured | target | |", "|---|---|---|---|"]
    for t in results["targets"]:
        met = "-" if t["met"] is None else ("met" if t["met"] else "missed")
        if t.get("valid") is False:
            met += f" (not valid: machine {100 * t['other_load']:.0f}% busy)"
        lines.append(f"| {t['what']} | {_mdv(t)} | {t['target']} | {met} |")
    i8, gap = results.get("int8"), results.get("library_gap")
    if i8:
        lines += ["", f"int8: the device's output equals the golden model's bit for bit: "
                      f"{'yes' if i8['bit_exact_vs_golden'] else 'NO'}; device compute "
                      f"{i8['device']['median_ms']:.2f} ms int8 vs "
                      f"{_fmt(i8['f32_device_ms'])} ms float32."]
    if gap:
        worst = max(gap["layers"], key=lambda r: r["ratio"])
        lines += ["", f"Device compute inside QEMU vs the library on the host, MobileNet-v1 "
                      f"1.0's convolutions: {gap['qemu_ms']:.2f} ms vs {gap['library_ms']:.2f} "
                      f"ms chained as in the network ({gap['ratio']:.2f}x; worst layer "
                      f"{worst['name']} {worst['ratio']:.2f}x), {gap['hot_ms']:.2f} ms with "
                      f"each layer repeated on warm caches ({gap['ratio_hot']:.2f}x)."]
    mb = next((r for r in results["networks"] if r["label"] == nets.MOBILENET_1.label), None)
    if mb:
        s = mb["split_ms"]
        lines += ["", f"MobileNet-v1 1.0 e2e {mb['e2e']['median_ms']:.2f} ms: device compute "
                      f"{s['device']:.2f}, driver + DMA {s['driver_and_dma']:.2f}, Python + "
                      f"ioctls {s['python_and_ioctls']:.2f} ms."]
    return "\n".join(lines)
