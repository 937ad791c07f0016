"""A PNG a person can glance at: axial and coronal slices through several nodules, each
with its mask outline, to see that the data looks like chest CT before training on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

LUNG_WINDOW = (-1350.0, 150.0)  # level -600, width 1500


def _pick_nodules(nodules: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Largest first, but make room for a ground-glass, a calcified and a juxta-pleural one."""
    by_size = sorted(nodules, key=lambda n: (-n["diameter_mm"], n["series_uid"], n["label"]))
    picks: list[dict[str, Any]] = []
    for want in (
        lambda n: n["texture"] <= 2,
        lambda n: n["calcification"] < 6,
        lambda n: n["touches_pleura"],
        lambda n: n["is_malignant"],
    ):
        for n in by_size:
            if want(n) and n not in picks:
                picks.append(n)
                break
    for n in by_size:
        if len(picks) >= k:
            break
        if n not in picks:
            picks.append(n)
    return picks[:k]


def write_montage(dataset_dir: Path, manifest: dict[str, Any], out_png: Path, k: int = 6) -> Path | None:
    """Rows: nodules; columns: full axial slice, 80 mm axial zoom, coronal slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lungmonai.geometry import xyz_to_irc
    from lungmonai.io.metaimage import read_metaimage
    from lungmonai.synth.writer import atomic_write_bytes

    series = {s["series_uid"]: s for s in manifest["series"]}
    picks = _pick_nodules(manifest["nodules"], k)
    if not picks and manifest["series"]:
        picks = [{"series_uid": manifest["series"][0]["series_uid"], "label": 0, "center_xyz": None}]
    if not picks:
        return None
    fig, axes = plt.subplots(len(picks), 3, figsize=(12, 4 * len(picks)), squeeze=False)
    for row, nod in zip(axes, picks):
        s = series[nod["series_uid"]]
        volume = read_metaimage(Path(dataset_dir) / s["file"])
        ct, geom = volume.hu, volume.geometry
        lab = read_metaimage(Path(dataset_dir) / s["mask_file"]).hu
        if nod["center_xyz"] is None:
            i, r, c = (np.array(ct.shape) // 2).tolist()
            title = "no nodule"
        else:
            i, r, c = xyz_to_irc(np.array(nod["center_xyz"]), geom).tolist()
            title = (
                f"{nod['diameter_mm']:.1f} mm, mal {nod['malignancy_ratings']}, tex {nod['texture']}, "
                f"calc {nod['calcification']}, {nod['placement']}"
            )
        mask = lab == nod["label"] if nod["label"] else np.zeros_like(lab, dtype=bool)
        sx, _, sz = geom.spacing_xyz
        half = int(40.0 / sx)
        r0, c0 = max(r - half, 0), max(c - half, 0)
        views = [
            (ct[i], mask[i], 1.0, f"axial {i}: {title}"),
            (ct[i, r0 : r + half, c0 : c + half], mask[i, r0 : r + half, c0 : c + half], 1.0, "axial, 80 mm"),
            (ct[::-1, r, :], mask[::-1, r, :], sz / sx, f"coronal row {r} (superior up)"),
        ]
        for ax, (im, m, aspect, t) in zip(row, views):
            ax.imshow(im, cmap="gray", vmin=LUNG_WINDOW[0], vmax=LUNG_WINDOW[1], aspect=aspect, interpolation="nearest")
            if m.any():
                ax.contour(m.astype(float), levels=[0.5], colors="r", linewidths=0.8)
            ax.set_title(t, fontsize=8)
            ax.set_axis_off()
    fig.suptitle(f"synthetic LUNA16 ({manifest['mode']}, seed {manifest['seed']}): lung window W1500 L-600", fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(Path(out_png), buf.getvalue())
    return Path(out_png)
