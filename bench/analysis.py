"""From the guest's and the host's measurements to ratios, fits and targets
(numpy only). Every ratio is between two numbers measured in the same run."""
from __future__ import annotations

from typing import Iterable

import numpy as np

import nets

TARGETS = dict(speedup_vs_guest_cpu=100.0, e2e_vs_torch=2.0, overhead_share=0.10)


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


def analyse(guest: dict, host: dict) -> dict:
    rows = [network_row(guest["main"][label], host["nets"][label]) for label in guest["main"]]
    points = [scaling_point(g) for g in list(guest["main"].values())
              + list(guest["scaling"].values())]
    ref = next((r for r in rows if r["label"] == nets.MOBILENET_1.label), None)
    targets = []
    if ref is not None:
        for key, goal in TARGETS.items():
            value = ref[key]
            ok = value >= goal if key == "speedup_vs_guest_cpu" else value <= goal
            targets.append(dict(what=f"{key} ({ref['label']})", value=value,
                                target=(">= " if key == "speedup_vs_guest_cpu" else "<= ")
                                + f"{goal:g}", met=bool(ok)))
    return dict(targets=targets, networks=rows, tiny=guest["tiny"],
                modes={k: modes(v) for k, v in guest["modes"].items()},
                scaling=scaling(points), check=guest["check"], drift=guest.get("drift"))
