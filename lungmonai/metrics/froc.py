"""LUNA16 FROC and CPM, following the challenge's evaluation script (``noduleCADEvaluationLUNA16.py``).

Rules, per evaluated scan (``series_uids``):

- A detection *hits* an annotation when its squared Euclidean distance (mm) to the
  annotation's centre is strictly below ``(diameter_mm / 2) ** 2``. A diameter below 0 (the
  ``-1`` rows of ``annotations_excluded.csv``) means 10 mm, i.e. radius 5 mm.
- Each annotated nodule (``annotations``) counts once: detected with the highest probability
  among the detections hitting it, or missed. Extra hits on a found nodule are ignored
  (neither TP nor FP); one detection hitting two nodules counts for both.
- Detections hitting no nodule but an irrelevant finding (``excluded``) are ignored.
- Every other detection is a false positive.
- Scans listed without detections add to the FP-per-scan denominator and their nodules are
  misses; detections of unlisted scans are dropped (with a warning), as are annotations of
  unlisted scans.

FROC curve: the found nodules (with their max probability) and the false positives, sorted by
probability; at each distinct threshold ``sensitivity = TPs / all nodules`` and
``fps_per_scan = FPs / scans``, starting from (0, 0) (what ``sklearn.metrics.roc_curve``
scaled by the script gives). Sensitivities at 1/8, 1/4, 1/2, 1, 2, 4 and 8 FPs per scan
are read off this curve as the script's ``numpy.interp`` does (:func:`interp_froc`: linear
in FPs/scan, flat beyond the last point: a system that never reaches 8 FPs/scan keeps its
final sensitivity there). The script samples that interpolant on a 10001-point grid and
community scripts read the nearest grid point; here the exact points are interpolated, which
can differ from a grid read-off in the 4th decimal. CPM is the mean of the seven.

Two degenerate cases differ from the script, which yields NaN there: no nodule found gives
sensitivity 0 everywhere (the script divides 0 by 0), and no nodules at all gives NaN.

:func:`bootstrap_froc` resamples scans with replacement as the script's
``computeFROC_bootstrap`` does (the nodule total is recounted per resample) and takes the
percentile bounds the same way (``sorted[floor(p * n)]``).

Column names: LUNA16's ``seriesuid, coordX, coordY, coordZ, probability, diameter_mm``;
this package's ``series_uid`` and ``center_x/y/z`` are accepted as aliases.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lungmonai.cache.atomic import jsonable

FROC_FPS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""The seven operating points of the LUNA16 CPM (average false positives per scan)."""

DEFAULT_EXCLUDED_DIAMETER_MM = 10.0
"""Diameter LUNA16 uses for a finding whose diameter is negative (``-1`` in annotations_excluded.csv)."""

_ALIASES: dict[str, tuple[str, ...]] = {
    "seriesuid": ("seriesuid", "series_uid"),
    "coordX": ("coordX", "center_x"),
    "coordY": ("coordY", "center_y"),
    "coordZ": ("coordZ", "center_z"),
}


def normalise_columns(frame: pd.DataFrame, required: Sequence[str], what: str) -> pd.DataFrame:
    """Copy of ``frame`` with LUNA16 column names, accepting this package's aliases."""
    renames = {}
    for name in required:
        if name in frame.columns:
            continue
        for alias in _ALIASES.get(name, ()):
            if alias in frame.columns:
                renames[alias] = name
                break
        else:
            raise KeyError(f"{what}: missing column {name!r} (have {list(frame.columns)})")
    out = frame.rename(columns=renames)
    out["seriesuid"] = out["seriesuid"].astype(str)
    return out


TRUTH_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]
"""Columns of annotations and of excluded (irrelevant) findings."""


def by_scan(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Rows of a normalised frame per ``seriesuid`` (scans without rows are absent)."""
    return {str(k): g for k, g in frame.groupby("seriesuid", sort=False)}


def _xyz(frame: pd.DataFrame) -> np.ndarray:
    return frame[["coordX", "coordY", "coordZ"]].to_numpy(dtype=np.float64).reshape(-1, 3)


def hit_matrix(
    nodule_xyz: np.ndarray, diameter_mm: np.ndarray, detection_xyz: np.ndarray, radius_factor: float = 0.5
) -> np.ndarray:
    """(n_nodules, n_detections) bool: detection closer than ``radius_factor * diameter`` (strict;
    0.5, the radius, is LUNA16's rule)."""
    nodule_xyz = np.asarray(nodule_xyz, dtype=np.float64).reshape(-1, 3)
    detection_xyz = np.asarray(detection_xyz, dtype=np.float64).reshape(-1, 3)
    diameter = np.asarray(diameter_mm, dtype=np.float64).reshape(-1)
    diameter = np.where(diameter < 0.0, DEFAULT_EXCLUDED_DIAMETER_MM, diameter)
    d2 = ((nodule_xyz[:, None, :] - detection_xyz[None, :, :]) ** 2).sum(axis=-1)
    return d2 < (radius_factor * diameter[:, None]) ** 2


class _Matched:
    """The FROC entries of one evaluation: found nodules and FPs, each tied to its scan."""

    def __init__(self, series_uids: list[str]):
        self.series_uids = series_uids
        self.entry_scan: list[np.ndarray] = []
        self.entry_gt: list[np.ndarray] = []
        self.entry_prob: list[np.ndarray] = []
        self.nodules_per_scan = np.zeros(len(series_uids), dtype=np.int64)
        self.counts = {"candidates": 0, "false_positives": 0, "ignored_excluded": 0, "ignored_duplicates": 0}
        self.nodule_rows: list[pd.DataFrame] = []

    def finish(self) -> None:
        cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)  # noqa: E731
        self.scan = cat(self.entry_scan, np.int64)
        self.gt = cat(self.entry_gt, bool)
        self.prob = cat(self.entry_prob, np.float64)
        # Sort once by probability, descending; ties form one threshold group.
        order = np.argsort(-self.prob, kind="stable")
        self.gt_sorted = self.gt[order]
        self.scan_sorted = self.scan[order]
        p = self.prob[order]
        self.last = np.flatnonzero(np.r_[p[1:] != p[:-1], True]) if p.size else np.zeros(0, np.int64)
        self.thresholds = p[self.last]


def _match(
    detections: pd.DataFrame,
    annotations: pd.DataFrame,
    series_uids: Iterable[str],
    excluded: pd.DataFrame | None,
) -> _Matched:
    series = list(dict.fromkeys(str(s) for s in series_uids))
    if not series:
        raise ValueError("series_uids is empty: the FROC needs the list of evaluated scans")
    det = normalise_columns(detections, ["seriesuid", "coordX", "coordY", "coordZ", "probability"], "detections")
    ann = normalise_columns(annotations, TRUTH_COLUMNS, "annotations")
    exc = normalise_columns(excluded, TRUTH_COLUMNS, "excluded") if excluded is not None else ann.iloc[:0]
    if det["probability"].isna().any():
        raise ValueError("detections: probability has NaN values")
    listed = set(series)
    unlisted = ~det["seriesuid"].isin(listed)
    if unlisted.any():
        warnings.warn(
            f"FROC: {int(unlisted.sum())} detections of {det.loc[unlisted, 'seriesuid'].nunique()} scans "
            "outside series_uids are ignored",
            RuntimeWarning,
            stacklevel=3,
        )
    det_groups = by_scan(det[~unlisted])
    ann_groups = by_scan(ann[ann["seriesuid"].isin(listed)])
    exc_groups = by_scan(exc[exc["seriesuid"].isin(listed)])
    m = _Matched(series)
    empty_det = det.iloc[:0]
    empty_ann = ann.iloc[:0]
    for s_idx, uid in enumerate(series):
        d = det_groups.get(uid, empty_det)
        a = ann_groups.get(uid, empty_ann)
        e = exc_groups.get(uid, empty_ann)
        prob = d["probability"].to_numpy(dtype=np.float64)
        d_xyz = _xyz(d)
        hits = hit_matrix(_xyz(a), a["diameter_mm"].to_numpy(), d_xyz)
        hits_exc = hit_matrix(_xyz(e), e["diameter_mm"].to_numpy(), d_xyz)
        on_nodule = hits.any(axis=0)
        on_excluded = hits_exc.any(axis=0) & ~on_nodule
        is_fp = ~on_nodule & ~on_excluded
        found = hits.any(axis=1)
        n_hits = hits.sum(axis=1)
        max_prob = np.where(hits, prob[None, :], -np.inf).max(axis=1) if len(prob) else np.full(len(a), -np.inf)
        m.nodules_per_scan[s_idx] = len(a)
        m.counts["candidates"] += len(d)
        m.counts["false_positives"] += int(is_fp.sum())
        m.counts["ignored_excluded"] += int(on_excluded.sum())
        m.counts["ignored_duplicates"] += int((n_hits[found] - 1).sum())
        m.entry_scan.append(np.full(int(found.sum()) + int(is_fp.sum()), s_idx))
        m.entry_gt.append(np.r_[np.ones(int(found.sum()), bool), np.zeros(int(is_fp.sum()), bool)])
        m.entry_prob.append(np.r_[max_prob[found], prob[is_fp]])
        if len(a):
            rows = a[["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]].copy()
            rows["detected"] = found
            rows["probability"] = np.where(found, max_prob, np.nan)
            rows["n_hits"] = n_hits
            m.nodule_rows.append(rows)
    m.finish()
    return m


def _curve(
    m: _Matched, scan_weight: np.ndarray | None, total_nodules: float, n_scans: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FROC curve (fps_per_scan, sensitivity, threshold), one point per distinct probability.

    ``scan_weight``: how many times each scan is counted (bootstrap), None for once each.
    """
    gt = m.gt_sorted
    if scan_weight is None:
        tp = np.cumsum(gt)[m.last]
        fp = np.cumsum(~gt)[m.last]
    else:
        w = scan_weight[m.scan_sorted]
        tp = np.cumsum(np.where(gt, w, 0.0))[m.last]
        fp = np.cumsum(np.where(gt, 0.0, w))[m.last]
    fps = np.r_[0.0, fp / n_scans]
    sens = np.r_[0.0, tp / total_nodules] if total_nodules > 0 else np.full(fps.size, np.nan)
    thresholds = np.r_[np.inf, m.thresholds]
    return fps, sens, thresholds


def interp_froc(x: np.ndarray | Sequence[float], fps: np.ndarray, sens: np.ndarray) -> np.ndarray:
    """Sensitivity at FPs/scan ``x`` on the curve, as ``numpy.interp(x, fps, sens)`` reads it.

    ``fps`` is non-decreasing with repeats (thresholds that add only true positives). Spelled
    out so as not to lean on ``numpy.interp``'s handling of repeated x: at a repeated value
    the last (highest) sensitivity counts, between two values the segment runs from the last
    point of the lower to the first point of the higher, beyond the end the curve is flat.
    """
    x = np.asarray(x, dtype=np.float64)
    fps = np.asarray(fps, dtype=np.float64)
    sens = np.asarray(sens, dtype=np.float64)
    j = np.searchsorted(fps, x, side="right") - 1
    out = np.empty(x.shape, dtype=np.float64)
    below = j < 0
    out[below] = sens[0]
    last = j >= fps.size - 1
    out[last] = sens[-1]
    mid = ~below & ~last
    jm = j[mid]
    frac = (x[mid] - fps[jm]) / (fps[jm + 1] - fps[jm])
    out[mid] = sens[jm] + frac * (sens[jm + 1] - sens[jm])
    return out


def _operating_points(fps: np.ndarray, sens: np.ndarray, points: Sequence[float] = FROC_FPS) -> np.ndarray:
    return interp_froc(points, fps, sens)


def compute_froc(
    detections: pd.DataFrame,
    annotations: pd.DataFrame,
    series_uids: Iterable[str],
    *,
    excluded: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """LUNA16 FROC of ``detections`` against ``annotations`` over the scans ``series_uids``.

    ``detections``: seriesuid, coordX, coordY, coordZ, probability (one row per CAD mark).
    ``annotations`` / ``excluded``: seriesuid, coordX, coordY, coordZ, diameter_mm.
    Returns a dict: ``fps_per_scan`` (the 7 points), ``sensitivities`` (7), ``cpm``,
    ``n_scans``, ``total_nodules``, ``detected`` (nodules hit by any detection),
    ``n_candidates``, ``false_positives``, ``ignored_excluded``, ``ignored_duplicates``,
    the curve ``curve_fps``, ``curve_sensitivity``, ``curve_thresholds`` (numpy arrays), and
    ``nodules`` (a frame: each annotation, detected, its max probability, n_hits).
    """
    m = _match(detections, annotations, series_uids, excluded)
    return _result(m)


def _result(m: _Matched) -> dict[str, Any]:
    n_scans = len(m.series_uids)
    total = int(m.nodules_per_scan.sum())
    fps, sens, thresholds = _curve(m, None, total, n_scans)
    points = _operating_points(fps, sens)
    nodules = (
        pd.concat(m.nodule_rows, ignore_index=True)
        if m.nodule_rows
        else pd.DataFrame(columns=["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm", "detected", "probability", "n_hits"])
    )
    return {
        "fps_per_scan": np.asarray(FROC_FPS),
        "sensitivities": points,
        "cpm": float(np.mean(points)),
        "n_scans": n_scans,
        "total_nodules": total,
        "detected": int(m.gt.sum()),
        "n_candidates": m.counts["candidates"],
        "false_positives": m.counts["false_positives"],
        "ignored_excluded": m.counts["ignored_excluded"],
        "ignored_duplicates": m.counts["ignored_duplicates"],
        "curve_fps": fps,
        "curve_sensitivity": sens,
        "curve_thresholds": thresholds,
        "nodules": nodules,
    }


def _percentile_bounds(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """LUNA16's ``computeMeanCI`` bounds: ``sorted[floor(p n)]`` and ``sorted[floor((1-p) n)]`` per column."""
    n = samples.shape[0]
    tail = (1.0 - confidence) / 2.0
    ordered = np.sort(samples, axis=0)
    lo = ordered[min(int(math.floor(tail * n)), n - 1)]
    hi = ordered[min(int(math.floor((1.0 - tail) * n)), n - 1)]
    return lo, hi


BAND_FPS = 2.0 ** np.linspace(-3.0, 3.0, 97)
"""Log-spaced FPs/scan grid (16 per octave, the 7 operating points exactly on it) for the band."""


def bootstrap_froc(
    detections: pd.DataFrame,
    annotations: pd.DataFrame,
    series_uids: Iterable[str],
    *,
    excluded: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """:func:`compute_froc` plus a scan-resampling bootstrap (LUNA16's ``computeFROC_bootstrap``).

    Added keys: ``cpm_ci`` (low, high), ``cpm_boot_mean``, ``sensitivities_low`` /
    ``sensitivities_high`` / ``sensitivities_boot_mean`` (7 each), ``band_fps`` with
    ``band_low`` / ``band_mean`` / ``band_high`` (the curve's band on :data:`BAND_FPS`),
    and ``bootstrap`` (n_boot, n_valid, seed, confidence). Resamples with no nodule at all
    are skipped (``n_valid`` counts the rest).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    m = _match(detections, annotations, series_uids, excluded)
    result = _result(m)
    n_scans = len(m.series_uids)
    grid = np.unique(np.r_[BAND_FPS, FROC_FPS])
    point_idx = np.searchsorted(grid, FROC_FPS)
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n_scans, n_scans), minlength=n_scans).astype(np.float64)
        total = float((counts * m.nodules_per_scan).sum())
        if total == 0:
            continue
        fps, sens, _ = _curve(m, counts, total, n_scans)
        curves.append(interp_froc(grid, fps, sens))
    if curves:
        samples = np.asarray(curves)
        cpm_samples = samples[:, point_idx].mean(axis=1)
        band_low, band_high = _percentile_bounds(samples, confidence)
        band_mean = samples.mean(axis=0)
        cpm_low, cpm_high = _percentile_bounds(cpm_samples[:, None], confidence)
        cpm_ci = (float(cpm_low[0]), float(cpm_high[0]))
        cpm_mean = float(cpm_samples.mean())
    else:
        band_low = band_high = band_mean = np.full(grid.size, np.nan)
        cpm_ci, cpm_mean = (float("nan"), float("nan")), float("nan")
    result.update(
        {
            "cpm_ci": cpm_ci,
            "cpm_boot_mean": cpm_mean,
            "sensitivities_low": band_low[point_idx],
            "sensitivities_high": band_high[point_idx],
            "sensitivities_boot_mean": band_mean[point_idx],
            "band_fps": grid,
            "band_low": band_low,
            "band_mean": band_mean,
            "band_high": band_high,
            "bootstrap": {"n_boot": n_boot, "n_valid": len(curves), "seed": seed, "confidence": confidence},
        }
    )
    return result


def paired_cpm_difference(
    detections_a: pd.DataFrame,
    detections_b: pd.DataFrame,
    annotations: pd.DataFrame,
    series_uids: Iterable[str],
    *,
    excluded: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """CPM of ``detections_b`` minus that of ``detections_a`` on the same scans, with a paired
    bootstrap interval: each resample draws the scans once and scores both systems on them.

    Two CPM intervals from separate bootstraps overlap long after the systems differ (on 49
    scans each spans about 0.2); resampling scans jointly cancels what the scans share.
    Returns ``cpm_a``, ``cpm_b``, ``difference``, ``difference_ci`` and ``n_valid``.
    """
    a = _match(detections_a, annotations, series_uids, excluded)
    b = _match(detections_b, annotations, a.series_uids, excluded)
    n = len(a.series_uids)
    cpm = lambda m, w, total: float(np.mean(_operating_points(*_curve(m, w, total, n)[:2])))  # noqa: E731
    total = float(a.nodules_per_scan.sum())
    result = {"cpm_a": cpm(a, None, total), "cpm_b": cpm(b, None, total)}
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        resampled = float((counts * a.nodules_per_scan).sum())
        if resampled > 0:
            diffs.append(cpm(b, counts, resampled) - cpm(a, counts, resampled))
    low, high = _percentile_bounds(np.asarray(diffs)[:, None], confidence) if diffs else ([np.nan], [np.nan])
    return {**result, "difference": result["cpm_b"] - result["cpm_a"],
            "difference_ci": (float(low[0]), float(high[0])), "n_valid": len(diffs)}


def froc_to_json(result: Mapping[str, Any], *, include_nodules: bool = True) -> dict[str, Any]:
    """The result dict with arrays as lists and NaN / inf as None (for ``atomic_write_json``)."""
    out = {k: v for k, v in result.items() if include_nodules or k != "nodules"}
    return jsonable(out)


def _wrap_title(text: str, width: int) -> str:
    """Each line of ``text`` wrapped at ``width`` characters (long words broken too)."""
    return "\n".join(
        textwrap.fill(line, width, break_long_words=True, break_on_hyphens=False) or line for line in text.split("\n")
    )


def _fit_title(fig, ax, text: str) -> None:
    """Set the axes title wrapped narrow enough that, after ``tight_layout``, it lies inside the figure."""
    renderer = fig.canvas.get_renderer()
    for width in (60, 50, 42, 35, 28, 22, 16):
        ax.set_title(_wrap_title(text, width), fontsize=11)
        fig.tight_layout()
        box = ax.title.get_window_extent(renderer)
        if box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y0 >= 0 and box.y1 <= fig.bbox.height:
            return


def _operating_point(point: tuple[float, float]) -> tuple[float, float]:
    fps, sensitivity = (float(v) for v in point)
    if not (math.isfinite(fps) and fps >= 0.0):
        raise ValueError(f"operating point: FPs per scan must be finite and >= 0, got {point[0]!r}")
    if not (math.isfinite(sensitivity) and 0.0 <= sensitivity <= 1.0):
        raise ValueError(f"operating point: sensitivity must be in [0, 1], got {point[1]!r}")
    return fps, sensitivity


def froc_figure(result: Mapping[str, Any], *, title: str = "FROC", label: str | None = None,
                operating_point: tuple[float, float] | None = None):
    """FROC curve on a log2 axis from 1/8 to 8 FPs/scan, bootstrap band and mean when present.

    ``operating_point``: (FPs per scan, sensitivity) of the thresholds in use, marked with a
    star; one outside the axis (below 1/8 or above 8 FPs/scan) is drawn at its edge, its
    legend entry giving the true value. Every line has a legend entry; the title, with the
    nodule and scan counts on a line of their own, is wrapped to fit the figure.
    """
    from lungmonai.plots import plt  # Agg backend, set there

    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    point = None if operating_point is None else _operating_point(operating_point)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=100)
    dense = 2.0 ** np.linspace(-3.0, 3.0, 601)
    sens = interp_froc(dense, result["curve_fps"], result["curve_sensitivity"])
    cpm = result["cpm"]
    text = f"CPM {cpm:.3f}"
    if "cpm_ci" in result:
        lo, hi = result["cpm_ci"]
        text += f" [{lo:.3f}, {hi:.3f}]"
    ax.plot(dense, sens, color="C0", lw=2, label=f"{label + ': ' if label else ''}{text}")
    if "band_fps" in result and np.all(np.isfinite(result["band_low"])):
        ax.fill_between(result["band_fps"], result["band_low"], result["band_high"], color="C0", alpha=0.15,
                        label=f"{int(100 * result['bootstrap']['confidence'])}% bootstrap band")
        ax.plot(result["band_fps"], result["band_mean"], color="C0", ls="--", lw=1, label="bootstrap mean")
    ax.plot(result["fps_per_scan"], result["sensitivities"], "o", color="C0", ms=4,
            label="sensitivity at the 7 CPM points")
    if point is not None:
        fps, sensitivity = point
        ax.plot([min(max(fps, FROC_FPS[0]), FROC_FPS[-1])], [sensitivity], marker="*", ms=13, ls="none",
                color="C3", markeredgecolor="black", markeredgewidth=0.6, clip_on=False, zorder=5,
                label=f"operating point: {fps:.3g} FPs/scan, sensitivity {sensitivity:.3f}")
    ax.set_xscale("log", base=2)
    ax.set_xlim(FROC_FPS[0], FROC_FPS[-1])
    ax.set_ylim(0.0, 1.0)
    ax.xaxis.set_major_locator(FixedLocator(FROC_FPS))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"1/{round(1 / v)}" if v < 1 else f"{v:g}"))
    ax.set_xlabel("Average number of false positives per scan")
    ax.set_ylabel("Sensitivity")
    ax.grid(True, which="major", alpha=0.4)
    # Below the axes, where it hides no part of a curve.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize="small", frameon=False)
    counts = f"{result['detected']}/{result['total_nodules']} nodules reached, {result['n_scans']} scans"
    _fit_title(fig, ax, f"{title}\n{counts}")
    return fig
