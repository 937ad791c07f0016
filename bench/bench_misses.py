"""Why is a nodule never reached? For every nodule an evaluation's detections miss, what the
segmentation saw there.

    python bench/bench_misses.py --dataset_dir data/luna16_full --detections output/recipe/val/detections.csv [--part val]
        [--fp_per_scan F]

Run it on val detections only: the held-out set is for decisions already made. Per missed nodule:
its diameter, the highest P(seg) and HU inside its sphere, and the components (at the pipeline's
``seg_threshold``, before the cap) that overlap the sphere, with their voxels, ``p_seg_max`` and
how far their centres lie from the nodule's (a detection counts only within the radius). The
last column names the cause:

- ``not segmented``: no voxel inside the sphere reaches the threshold;
- ``fragmented``: components overlap the nodule but every centre lies outside its radius;
- ``dropped by the cap``: a component's centre is inside the radius, but it ranked below
  ``max_components`` and was never classified;
- ``classified out``: it was classified, and scored below every detection kept (none here
  when the detections are every candidate's, as the evaluation writes them).

``--fp_per_scan F`` keeps only the detections at or above the threshold that gives F false
positives per scan on these series (the FROC's own rule), so a nodule reached but ranked below
them counts as missed too: at 8 it lists what stands between the FROC's last point and full
sensitivity. The column "best P(nodule)" is the highest score of any detection that hits it.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lungmonai.config import find_bundles  # noqa: E402
from lungmonai.geometry import xyz_to_irc_continuous  # noqa: E402
from lungmonai.grouping import ComponentCapWarning, group_segmentation, label_segmentation, segmentation_mask  # noqa: E402
from lungmonai.io import find_series, read_ct  # noqa: E402
from lungmonai.io.grid import to_grid  # noqa: E402
from lungmonai.io.orient import to_lps  # noqa: E402
from lungmonai.metrics.froc import hit_matrix  # noqa: E402
from lungmonai.pipeline import load_models, pipeline_settings  # noqa: E402
from lungmonai.pipeline.evaluation import truth_table  # noqa: E402
from lungmonai.pipeline.operating import operating_threshold  # noqa: E402
from lungmonai.segmentation import segment_ct  # noqa: E402
from lungmonai.tables.splits import load_split  # noqa: E402

XYZ = ["coordX", "coordY", "coordZ"]
CENTRE = ["center_x", "center_y", "center_z"]


def missed_nodules(truth: pd.DataFrame, detections: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``truth`` that no detection hits (LUNA16's rule: centre within the radius)."""
    keep = []
    for uid, t in truth.groupby("seriesuid", sort=False):
        d = detections[detections["seriesuid"] == uid]
        if len(d):
            hit = hit_matrix(t[XYZ].to_numpy(np.float64), t["diameter_mm"].to_numpy(), d[XYZ].to_numpy(np.float64)).any(axis=1)
        else:
            hit = np.zeros(len(t), dtype=bool)
        keep.append(t[~hit])
    return pd.concat(keep) if keep else truth.iloc[:0]


def best_scores(truth: pd.DataFrame, detections: pd.DataFrame) -> np.ndarray:
    """Per row of ``truth``, the highest ``probability`` of the detections that hit it (NaN: none)."""
    best = np.full(len(truth), np.nan)
    rows = np.arange(len(truth))
    for uid, t in truth.assign(_row=rows).groupby("seriesuid", sort=False):
        d = detections[detections["seriesuid"] == uid]
        if not len(d):
            continue
        hit = hit_matrix(t[XYZ].to_numpy(np.float64), t["diameter_mm"].to_numpy(), d[XYZ].to_numpy(np.float64))
        scores = np.where(hit, d["probability"].to_numpy(np.float64)[None, :], -np.inf).max(axis=1)
        best[t["_row"].to_numpy()] = np.where(np.isfinite(scores), scores, np.nan)
    return best


def sphere_values(volume: np.ndarray, centre_irc: np.ndarray, spacing_irc: np.ndarray, radius_mm: float) -> tuple[np.ndarray, tuple]:
    """The voxels of ``volume`` within ``radius_mm`` of ``centre_irc`` (at least the nearest one), and their index."""
    lo = np.maximum(np.floor(centre_irc - radius_mm / spacing_irc).astype(int), 0)
    hi = np.minimum(np.ceil(centre_irc + radius_mm / spacing_irc).astype(int) + 1, volume.shape)
    grid = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
    dist = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre_irc, spacing_irc)))
    inside = dist <= max(radius_mm, dist.min())
    index = tuple(g[inside] for g in grid)
    return volume[index], index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", type=Path, required=True)
    ap.add_argument("--detections", type=Path, required=True, help="an evaluation's detections.csv (LUNA16 columns)")
    ap.add_argument("--part", default="val")
    ap.add_argument("--bundles", type=Path, default=None)
    ap.add_argument("--fp_per_scan", type=float, default=None,
                    help="count as missed what scores below the threshold for this many false positives per scan")
    args = ap.parse_args()
    bundles = find_bundles(args.bundles)
    models = load_models(bundles, device="cpu", with_malignancy=False)
    settings = pipeline_settings(bundles)
    seg = models.seg_settings
    series = load_split(args.dataset_dir / "prepared/split.json").series_in(args.part)
    truth = truth_table(args.dataset_dir)
    truth = truth[truth["seriesuid"].isin(series)]
    detections = pd.read_csv(args.detections, dtype={"seriesuid": str})
    kept, at = detections, ""
    if args.fp_per_scan is not None:
        op = operating_threshold(args.detections, args.dataset_dir, args.part, args.fp_per_scan)
        kept = detections[detections["probability"] >= op["threshold"]]
        at = f" at {op['fp_per_scan']:g} FP per scan (P(nodule) >= {op['threshold']:.4g})"
    missed = missed_nodules(truth, kept)
    missed = missed.assign(best=best_scores(missed, detections))
    paths = find_series(args.dataset_dir)
    print(f"{len(missed)} of {len(truth)} {args.part} nodules missed by {args.detections}{at}\n")
    print("| series | diameter mm | max P(seg) inside | max HU inside | components overlapping (voxels, p_seg_max, "
          "centre distance mm) | rank of the nearest | best P(nodule) | cause |")
    print("|---|---|---|---|---|---|---|---|")
    for uid, nodules in missed.groupby("seriesuid", sort=False):
        ct = to_grid(to_lps(read_ct(paths[uid])), seg.get("grid_spacing_xyz"))
        prob = segment_ct(ct, models.segmenter, models.device, batch_size=settings.seg_batch_size,
                          context=seg["context"], hu_window=seg["hu_window"], precision=settings.precision)
        mask = segmentation_mask(prob, threshold=settings.seg_threshold, erosion_iterations=0)
        labels, _ = label_segmentation(mask=mask, erosion_iterations=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ComponentCapWarning)
            every = group_segmentation(prob, ct.hu, ct.geometry, mask=mask, max_components=None)
        spacing_irc = np.asarray(ct.geometry.spacing_xyz, dtype=np.float64)[::-1]
        for _, n in nodules.iterrows():
            xyz = n[XYZ].to_numpy(np.float64)
            radius = float(n["diameter_mm"]) / 2
            centre = np.asarray(xyz_to_irc_continuous(xyz[None], ct.geometry))[0]
            p, index = sphere_values(prob, centre, spacing_irc, radius)
            hu = ct.hu[index]
            ids = np.unique(labels[index])
            comps = every[every["label"].isin(ids[ids > 0])]
            dist = np.linalg.norm(comps[CENTRE].to_numpy(np.float64) - xyz, axis=1)
            listed = ", ".join(f"({v}, {q:.2f}, {d:.1f})" for v, q, d in zip(comps["voxels"], comps["p_seg_max"], dist))
            rank = "-"
            if not len(comps):
                cause = "not segmented"
            elif not (dist <= radius).any():
                cause = "fragmented"
            else:
                rank = int(comps.index[np.argmin(dist)]) + 1  # every is ranked best first
                cause = "dropped by the cap" if rank > settings.max_components else "classified out"
            best = "-" if np.isnan(n["best"]) else f"{n['best']:.3f}"
            print(f"| {uid[-8:]} | {n['diameter_mm']:.1f} | {p.max():.2f} | {hu.max():.0f} | {listed or '-'} | {rank} | {best} | {cause} |",
                  flush=True)


if __name__ == "__main__":
    main()
