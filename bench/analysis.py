"""From the guest's and the host's measurements to ratios, fits and targets
(numpy only). Every ratio is between two numbers measured in the same run."""
from __future__ import annotations

from typing import Iterable

import numpy as np

import nets

TARGETS = dict(speedup_vs_guest_cpu=100.0, e2e_vs_torch=1.3, overhead_share=0.10)
# issue #15's table: key -> (what, "<=" or ">=", goal)
TABLE = {
    "e2e_vs_torch": ("MobileNet-v1 1.0@224 e2e / host PyTorch float32", "<=", 1.3),
    "resnet18_e2e_vs_torch": ("ResNet-18@224 e2e / host PyTorch float32", "<=", 1.3),
    "mobilenet_v2_e2e_vs_torch": ("MobileNetV2 1.0@224 e2e / host PyTorch float32", "<=", 1.3),
    "device_in_qemu_vs_library": ("device compute inside QEMU / the same layers chained "
                                  "through the library on the host (MobileNet-v1 1.0)", "<=",
                                  1.1),
    "overhead_share": ("share of e2e outside the device's compute (MobileNet-v1 1.0)", "<=",
                       0.10),
    "tiny_job_ms": ("tiny job (1x1 conv, 1 element) round trip from Python, median ms", "<=",
                    0.1),
    "int8_e2e_vs_torch": ("int8 MobileNet-v1 1.0 e2e / host PyTorch float32", "<=", 0.7),
    "int8_vs_onnxruntime": ("int8 device e2e / onnxruntime int8 on the host, same model", "<=",
                            1.0),
    "batch_throughput_vs_torch": ("batch 8 throughput / PyTorch batch 8 (MobileNet-v1 1.0)",
                                  ">=", 0.9),
    "speedup_vs_guest_cpu": ("device e2e vs guest CPU numpy (MobileNet-v1 1.0), x faster",
                             ">=", 100.0),
}


def _med(d: dict) -> float:
    return d["median_ms"]


def network_row(g: dict, host: dict) -> dict:
    """One MAIN network: the device against the guest CPU and host PyTorch."""
    e2e, device, driver = _med(g["e2e"]), _med(g["device"]), _med(g["driver"])
    torch_e2e = _med(host["e2e"])
    layers = [dict(name=d["name"], op=d["op"], macs=d["macs"], device_ms=d["device_ms"],
                   torch_ms=_med(t), device_vs_torch=d["device_ms"] / _med(t))
              for d, t in zip(g["layers"], host["layers"])]
    return dict(
        label=g["net"]["label"], family=g["net"]["family"], width=g["net"]["width"],
        resolution=g["net"]["resolution"], macs=g["macs"], params=g["params"],
        e2e=g["e2e"], device=g["device"], driver=g["driver"], cpu=g["cpu"], torch=host["e2e"],
        modelled_ms=g["modelled_ms"],
        speedup_vs_guest_cpu=_med(g["cpu"]) / e2e,
        compute_speedup_vs_guest_cpu=_med(g["cpu"]) / device,
        e2e_vs_torch=e2e / torch_e2e, device_vs_torch=device / torch_e2e,
        overhead_share=g["overhead_share"],
        split_ms=dict(device=device, driver_and_dma=driver - device,
                      python_and_ioctls=e2e - driver),
        cpu_vs_device_max_abs_diff=g["cpu_vs_device_max_abs_diff"],
        torch_vs_oracle_max_abs_err=host["max_abs_err_vs_oracle"],
        layers=layers)


def wls_line(x: Iterable[float], y: Iterable[float]) -> dict:
    """y = a + b x, least squares on relative errors (weights 1/y), so that
    small networks count as much as big ones: a is the fixed cost."""
    x, y = np.asarray(list(x), float), np.asarray(list(y), float)
    w = 1.0 / y
    A = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    (a, b), *_ = np.linalg.lstsq(A, y * w, rcond=None)
    rel = (a + b * x - y) / y
    return dict(intercept_ms=float(a), ms_per_gmac=float(b * 1e9),
                gmac_per_s=float(1e3 / (b * 1e9)) if b > 0 else None,
                median_abs_rel_residual=float(np.median(np.abs(rel))), points=len(x))


def scaling(points: list[dict]) -> dict:
    """Device time and e2e time against MACs: a line per family and for all."""
    fits = {}
    for family in ("allconv", "mobilenet_v1", "all"):
        pts = [p for p in points if family in ("all", p["family"])]
        fits[family] = dict(device=wls_line((p["macs"] for p in pts),
                                            (p["device_ms"] for p in pts)),
                            e2e=wls_line((p["macs"] for p in pts), (p["e2e_ms"] for p in pts)))
    return dict(points=points, fits=fits)


def scaling_point(g: dict) -> dict:
    n = g["net"]
    return dict(label=n["label"], family=n["family"], width=n["width"],
                resolution=n["resolution"], depth=n["depth"], macs=g["macs"],
                device_ms=_med(g["device"]), e2e_ms=_med(g["e2e"]),
                driver_ms=_med(g["driver"]), overhead_share=g["overhead_share"],
                modelled_ms=g["modelled_ms"])


def modes(m: dict) -> dict:
    chain = _med(m["chain"])
    return dict(m, per_layer_zero_copy_vs_chain=_med(m["per_layer_zero_copy"]) / chain,
                per_layer_copying_vs_chain=_med(m["per_layer_copying"]) / chain)


def _spread(d: dict) -> list:
    return [d["median_ms"], d["p10_ms"], d["p90_ms"]]


def zoo_row(g: dict, host: dict) -> dict:
    e2e, device, driver = _med(g["e2e"]), _med(g["device"]), _med(g["driver"])
    return dict(label=g["net"]["label"], macs=g["macs"], params=g["params"], e2e=g["e2e"],
                device=g["device"], driver=g["driver"], torch=host["e2e"],
                e2e_vs_torch=e2e / _med(host["e2e"]),
                device_vs_torch=device / _med(host["e2e"]), overhead_share=g["overhead_share"],
                split_ms=dict(device=device, driver_and_dma=driver - device,
                              python_and_ioctls=e2e - driver),
                torch_vs_oracle_max_abs_err=host["max_abs_err_vs_oracle"],
                oracle_max_abs=host["oracle_max_abs"], compile_ms=g["compile_ms"],
                layers=g["layers"])


def int8_row(g: dict, host: dict, f32_row: dict | None) -> dict:
    """The int8 network against PyTorch float32 of the same network: the
    float row's measurement (f32_row, MobileNet-v1 1.0) when there is one,
    so that both rows divide by the same number, else host's own."""
    e2e = _med(g["e2e"])
    ort = host["onnxruntime"]
    tf = f32_row["torch"] if f32_row else host["torch"]["e2e"]
    return dict(label=g["net"]["label"], macs=g["macs"], e2e=g["e2e"], device=g["device"],
                driver=g["driver"], overhead_share=g["overhead_share"],
                torch_f32=tf, torch_f32_graph_twin=host["torch"]["e2e"],
                onnxruntime=ort["e2e"],
                e2e_vs_torch=e2e / _med(tf), vs_onnxruntime=e2e / _med(ort["e2e"]),
                device_vs_onnxruntime=_med(g["device"]) / _med(ort["e2e"]),
                f32_device_ms=f32_row["device"]["median_ms"] if f32_row else None,
                f32_e2e_ms=f32_row["e2e"]["median_ms"] if f32_row else None,
                split_ms=dict(device=_med(g["device"]),
                              driver_and_dma=_med(g["driver"]) - _med(g["device"]),
                              python_and_ioctls=e2e - _med(g["driver"])),
                bit_exact_vs_golden=host.get("bit_exact_vs_golden"),
                max_abs_diff_vs_golden=host.get("max_abs_diff_vs_golden"),
                onnxruntime_version=ort["onnxruntime"], layers=g["layers"])


def library_gap(g: dict, lib: dict) -> dict:
    """The convolutions of MobileNet-v1 1.0: device_ns inside QEMU (per-layer
    medians of the e2e calls) against the library's own time on the host."""
    dev = [ly for ly in g["layers"] if ly["op"] == "conv"]
    rows = [dict(name=d["name"], shape=lb["shape"], qemu_ms=d["device_ms"],
                 library_ms=lb["chain"]["median_ms"], hot_ms=lb["hot"]["median_ms"],
                 ratio=d["device_ms"] / lb["chain"]["median_ms"],
                 ratio_hot=d["device_ms"] / lb["hot"]["median_ms"])
            for d, lb in zip(dev, lib["layers"])]
    q, lb = sum(r["qemu_ms"] for r in rows), sum(r["library_ms"] for r in rows)
    hot = sum(r["hot_ms"] for r in rows)
    return dict(layers=rows, qemu_ms=q, library_ms=lb, hot_ms=hot, ratio=q / lb,
                ratio_hot=q / hot, threads=lib["threads"],
                library=lib["library"], openblas_core=lib["openblas_core"])


def table_targets(values: dict, spreads: dict) -> list:
    out = []
    for key, (what, op, goal) in TABLE.items():
        v = values.get(key)
        met = None if v is None else bool(v <= goal if op == "<=" else v >= goal)
        out.append(dict(key=key, what=what, value=v, target=f"{op} {goal:g}", met=met,
                        **spreads.get(key, {})))
    return out


# Other processes' share of the machine above which a ratio is no comparison:
# PyTorch's OpenMP threads (their barriers spin) lose far more than the
# device when the two cores are shared, the device's threads share them with
# the guest's vCPUs.
MAX_OTHER_LOAD = 0.25
# which phase's load each target depends on
TARGET_PHASES = {"e2e_vs_torch": ("guest", "host"), "resnet18_e2e_vs_torch": ("guest", "host"),
                 "mobilenet_v2_e2e_vs_torch": ("guest", "host"),
                 "device_in_qemu_vs_library": ("guest", "host"), "overhead_share": ("guest",),
                 "tiny_job_ms": ("guest",), "int8_e2e_vs_torch": ("guest", "host"),
                 "int8_vs_onnxruntime": ("guest", "host"),
                 "batch_throughput_vs_torch": ("guest", "host"),
                 "speedup_vs_guest_cpu": ("guest",)}


def validate(targets: list, env: dict, max_load: float = MAX_OTHER_LOAD) -> None:
    """Mark each target valid or not by the other processes' load during the
    phases it was measured in (env: bench.py's; loads as fractions)."""
    loads = dict(guest=env.get("other_load_during_guest", 0.0),
                 host=env.get("other_load_during_host", 0.0))
    for t in targets:
        worst = max(loads[p] for p in TARGET_PHASES.get(t["key"], ("guest", "host")))
        t["other_load"] = round(worst, 3)
        t["valid"] = worst <= max_load


def analyse(guest: dict, host: dict) -> dict:
    rows = [network_row(guest["main"][label], host["nets"][label]) for label in guest["main"]]
    points = [scaling_point(g) for g in list(guest["main"].values())
              + list(guest["scaling"].values())]
    ref = next((r for r in rows if r["label"] == nets.MOBILENET_1.label), None)
    values: dict = {}
    spreads: dict = {}
    if ref is not None:
        for key in ("e2e_vs_torch", "overhead_share", "speedup_vs_guest_cpu"):
            values[key] = ref[key]
        spreads["e2e_vs_torch"] = dict(num_ms=_spread(ref["e2e"]), den_ms=_spread(ref["torch"]))
        spreads["speedup_vs_guest_cpu"] = dict(num_ms=_spread(ref["cpu"]),
                                               den_ms=_spread(ref["e2e"]))
        spreads["overhead_share"] = dict(num_ms=_spread(ref["device"]),
                                         den_ms=_spread(ref["e2e"]))
    zoo = [zoo_row(guest["zoo"][k], host["zoo"][k]) for k in guest.get("zoo", {})
           if k in host.get("zoo", {})]
    for r in zoo:
        key = r["label"].rsplit("-", 1)[0] + "_e2e_vs_torch"
        values[key] = r["e2e_vs_torch"]
        spreads[key] = dict(num_ms=_spread(r["e2e"]), den_ms=_spread(r["torch"]))
    tiny = guest["tiny"]["zero_copy"]
    values["tiny_job_ms"] = tiny["median_ms"]
    spreads["tiny_job_ms"] = dict(num_ms=_spread(tiny))
    i8 = None
    if "int8" in guest and "int8" in host:
        i8 = dict(int8_row(guest["int8"], host["int8"], ref),
                  bit_exact_vs_golden=host["int8"].get("bit_exact_vs_golden"))
        values["int8_e2e_vs_torch"] = i8["e2e_vs_torch"]
        values["int8_vs_onnxruntime"] = i8["vs_onnxruntime"]
        spreads["int8_e2e_vs_torch"] = dict(num_ms=_spread(i8["e2e"]),
                                            den_ms=_spread(i8["torch_f32"]))
        spreads["int8_vs_onnxruntime"] = dict(num_ms=_spread(i8["e2e"]),
                                              den_ms=_spread(i8["onnxruntime"]))
    batch = None
    if "batch" in guest and "batch" in host:
        g, h = guest["batch"], host["batch"]
        batch = dict(label=g["net"]["label"], batch=g["batch"], e2e=g["e2e"], device=g["device"],
                     torch=h["e2e"], images_per_s=1e3 * g["batch"] / _med(g["e2e"]),
                     torch_images_per_s=1e3 * g["batch"] / _med(h["e2e"]),
                     throughput_vs_torch=_med(h["e2e"]) / _med(g["e2e"]),
                     overhead_share=g["overhead_share"])
        values["batch_throughput_vs_torch"] = batch["throughput_vs_torch"]
        spreads["batch_throughput_vs_torch"] = dict(num_ms=_spread(h["e2e"]),
                                                    den_ms=_spread(g["e2e"]))
    gap = None
    if ref is not None and "library" in host:
        gap = library_gap(guest["main"][nets.MOBILENET_1.label], host["library"])
        values["device_in_qemu_vs_library"] = gap["ratio"]
        spreads["device_in_qemu_vs_library"] = dict(num_ms=[gap["qemu_ms"]],
                                                    den_ms=[gap["library_ms"]])
    return dict(targets=table_targets(values, spreads), networks=rows, zoo=zoo, int8=i8,
                batch=batch, library_gap=gap, tiny=guest["tiny"],
                modes={k: modes(v) for k, v in guest["modes"].items()},
                scaling=scaling(points), check=guest["check"], drift=guest.get("drift"))
