"""LUNA16 FROC / CPM (lungmonai.metrics.froc), against hand-computed cases and a literal
re-implementation of the challenge script's matching and curve."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lungmonai.metrics.froc import (
    FROC_FPS,
    bootstrap_froc,
    compute_froc,
    froc_figure,
    froc_to_json,
    interp_froc,
    paired_cpm_difference,
)

DET_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "probability"]
ANN_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]


def dets(*rows):
    return pd.DataFrame(list(rows), columns=DET_COLUMNS)


def anns(*rows):
    return pd.DataFrame(list(rows), columns=ANN_COLUMNS)


# Nodules of 10 mm (radius 5) in scans a, b, c, d.
NODULES = anns(
    ("a", 0.0, 0.0, 0.0, 10.0),
    ("b", 10.0, 10.0, 10.0, 10.0),
    ("c", -20.0, 5.0, 3.0, 10.0),
    ("d", 0.0, 0.0, 0.0, 10.0),
)
FAR = 100.0


def test_perfect_detector_has_cpm_one():
    detections = dets(*[(r.seriesuid, r.coordX + 1.0, r.coordY, r.coordZ, 0.9) for r in NODULES.itertuples()])
    result = compute_froc(detections, NODULES, ["a", "b", "c", "d", "e"])
    assert result["cpm"] == 1.0
    np.testing.assert_array_equal(result["sensitivities"], np.ones(7))
    assert result["total_nodules"] == 4 and result["detected"] == 4 and result["false_positives"] == 0
    assert result["n_scans"] == 5
    assert result["nodules"]["detected"].all()


def test_only_false_positives_give_zero():
    detections = dets(("a", FAR, 0, 0, 0.9), ("b", FAR, 0, 0, 0.8), ("c", 0, FAR, 0, 0.99))
    result = compute_froc(detections, NODULES, ["a", "b", "c", "d"])
    assert result["cpm"] == 0.0
    assert result["detected"] == 0 and result["false_positives"] == 3


def test_no_detections_at_all():
    result = compute_froc(dets(), NODULES, ["a", "b"])
    assert result["cpm"] == 0.0 and result["total_nodules"] == 2 and result["n_candidates"] == 0


def test_known_partial_case():
    # a: hit 0.9, FP 0.8 | b: FP 0.95, hit 0.5 | c: FPs 0.7 0.6 0.4, nodule missed | d: nothing.
    detections = dets(
        ("a", 1.0, 0.0, 0.0, 0.9),
        ("a", FAR, 0.0, 0.0, 0.8),
        ("b", FAR, 0.0, 0.0, 0.95),
        ("b", 10.0, 12.0, 10.0, 0.5),
        ("c", FAR, 0.0, 0.0, 0.7),
        ("c", 0.0, FAR, 0.0, 0.6),
        ("c", 0.0, 0.0, FAR, 0.4),
    )
    result = compute_froc(detections, NODULES, ["a", "b", "c", "d"])
    # Sorted: FP .95, TP .9, FP .8, FP .7, FP .6, TP .5, FP .4 over 4 scans and 4 nodules:
    # (0,0) (.25,0) (.25,.25) (.5,.25) (.75,.25) (1,.25) (1,.5) (1.25,.5)
    np.testing.assert_allclose(result["curve_fps"], [0, 0.25, 0.25, 0.5, 0.75, 1.0, 1.0, 1.25])
    np.testing.assert_allclose(result["curve_sensitivity"], [0, 0, 0.25, 0.25, 0.25, 0.25, 0.5, 0.5])
    np.testing.assert_allclose(result["curve_thresholds"][1:], [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    # 1/8: on the (0,0)-(.25,0) segment; 1/4 and 1/2: .25; 1 and beyond: .5
    np.testing.assert_allclose(result["sensitivities"], [0, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5])
    assert result["cpm"] == pytest.approx(2.5 / 7)
    assert (result["detected"], result["false_positives"], result["total_nodules"]) == (2, 5, 4)
    nodules = result["nodules"].set_index("seriesuid")
    assert nodules.loc["a", "probability"] == 0.9 and np.isnan(nodules.loc["c", "probability"])


def test_interpolation_between_points_is_linear():
    # 2 scans: FP .9, TP .8 (nodule 1 of 2), FP .7, FP .6  ->  (0,0) (.5,0) (.5,.5) (1,.5) (1.5,.5)
    detections = dets(("a", FAR, 0, 0, 0.9), ("a", 0, 0, 0, 0.8), ("b", FAR, 0, 0, 0.7), ("b", 0, FAR, 0, 0.6))
    result = compute_froc(detections, NODULES, ["a", "b"])
    # 1/8 and 1/4 lie on the (0,0)-(.5,0) segment -> 0; the rest .5.
    np.testing.assert_allclose(result["sensitivities"], [0, 0, 0.5, 0.5, 0.5, 0.5, 0.5])
    # FP .9 after TP .8 instead: (0,0) (0,.5) (.5,.5) ... -> 0.5 from the first point.
    swapped = detections.assign(probability=[0.8, 0.9, 0.7, 0.6])
    np.testing.assert_allclose(compute_froc(swapped, NODULES, ["a", "b"])["sensitivities"], np.full(7, 0.5))
    # A tie between a TP and an FP is one threshold: a diagonal segment (0,0)-(.5,.5).
    tied = detections.assign(probability=[0.8, 0.8, 0.7, 0.6])
    np.testing.assert_allclose(compute_froc(tied, NODULES, ["a", "b"])["sensitivities"][:3], [0.125, 0.25, 0.5])


def test_scans_without_detections_count():
    detections = dets(("a", FAR, 0, 0, 0.9), ("a", 0, 0, 0, 0.5))
    one = compute_froc(detections, NODULES.iloc[:1], ["a"])
    assert one["cpm"] == pytest.approx(4 / 7)  # FP at 1 FP/scan, then the TP
    two = compute_froc(detections, NODULES.iloc[:1], ["a", "e"])  # e: no detections, no nodules
    assert two["cpm"] == pytest.approx(5 / 7)  # the FP is now 0.5 FP/scan
    with_miss = compute_froc(detections, NODULES, ["a", "d"])  # d: no detections, one nodule
    assert with_miss["cpm"] == pytest.approx(2.5 / 7)
    assert with_miss["total_nodules"] == 2 and with_miss["detected"] == 1


def test_excluded_findings_are_ignored():
    excluded = anns(("a", 50.0, 0.0, 0.0, -1.0), ("a", 0.0, 50.0, 0.0, 4.0))
    detections = dets(
        ("a", 0.0, 0.0, 0.0, 0.5),  # TP
        ("a", 54.0, 0.0, 0.0, 0.9),  # 4 mm from a diameter -1 finding: inside the default 5 mm radius
        ("a", 0.0, 51.0, 0.0, 0.9),  # inside the 4 mm finding
        ("a", 56.0, 0.0, 0.0, 0.8),  # 6 mm away: a false positive
    )
    result = compute_froc(detections, NODULES, ["a"], excluded=excluded)
    assert result["ignored_excluded"] == 2 and result["false_positives"] == 1
    # FP .8 then TP .5 over 1 scan -> sensitivity 1 from 1 FP/scan on.
    np.testing.assert_allclose(result["sensitivities"], [0, 0, 0, 1, 1, 1, 1])
    without = compute_froc(detections, NODULES, ["a"])
    assert without["false_positives"] == 3 and without["cpm"] < result["cpm"]


def test_excluded_finding_overlapping_a_nodule_does_not_hide_the_hit():
    excluded = anns(("a", 1.0, 0.0, 0.0, 10.0))
    result = compute_froc(dets(("a", 0.5, 0.0, 0.0, 0.7)), NODULES, ["a"], excluded=excluded)
    assert result["detected"] == 1 and result["ignored_excluded"] == 0 and result["cpm"] == 1.0


def test_duplicate_hits_are_not_false_positives():
    detections = dets(("a", 0.0, 0.0, 0.0, 0.3), ("a", 1.0, 1.0, 0.0, 0.9), ("a", -2.0, 0.0, 1.0, 0.2))
    result = compute_froc(detections, NODULES, ["a"])
    assert result["false_positives"] == 0 and result["ignored_duplicates"] == 2
    assert result["cpm"] == 1.0
    assert result["nodules"].loc[0, "probability"] == 0.9 and result["nodules"].loc[0, "n_hits"] == 3


def test_hit_radius_is_strict_and_one_mark_can_find_two_nodules():
    on_edge = compute_froc(dets(("a", 5.0, 0.0, 0.0, 0.9)), NODULES, ["a"])
    assert on_edge["detected"] == 0 and on_edge["false_positives"] == 1
    two = anns(("a", 0.0, 0.0, 0.0, 10.0), ("a", 6.0, 0.0, 0.0, 10.0))
    shared = compute_froc(dets(("a", 3.0, 0.0, 0.0, 0.9)), two, ["a"])
    assert shared["detected"] == 2 and shared["cpm"] == 1.0


def test_unlisted_scans_are_dropped_and_aliases_accepted():
    detections = pd.DataFrame(
        {"series_uid": ["a", "zz"], "center_x": [0.0, 0.0], "center_y": [0.0, 0.0], "center_z": [0.0, 0.0], "probability": [0.9, 0.9]}
    )
    with pytest.warns(RuntimeWarning, match="1 detections of 1 scans"):
        result = compute_froc(detections, NODULES, ["a"])
    assert result["n_candidates"] == 1 and result["cpm"] == 1.0
    with pytest.raises(KeyError, match="probability"):
        compute_froc(detections.drop(columns="probability"), NODULES, ["a"])
    with pytest.raises(ValueError, match="empty"):
        compute_froc(detections, NODULES, [])


# ------------------------------------------------------------------------------------------
# literal re-implementation of noduleCADEvaluationLUNA16.py's matching + computeFROC


def luna_script_sensitivities(detections, annotations, excluded, series):
    gt, prob, skip = [], [], []
    for uid in series:
        cands = {k: r for k, r in enumerate(detections[detections.seriesuid == uid].itertuples())}
        cands2 = dict(cands)
        nodules = [(r, "Included") for r in annotations[annotations.seriesuid == uid].itertuples()]
        nodules += [(r, "Excluded") for r in excluded[excluded.seriesuid == uid].itertuples()]
        for nod, state in nodules:
            diameter = nod.diameter_mm if nod.diameter_mm >= 0 else 10.0
            found, matches = False, []
            for key, c in cands.items():
                dist = (nod.coordX - c.coordX) ** 2 + (nod.coordY - c.coordY) ** 2 + (nod.coordZ - c.coordZ) ** 2
                if dist < (diameter / 2.0) ** 2:
                    if state == "Included":
                        found = True
                        matches.append(c)
                    cands2.pop(key, None)
            if state == "Included":
                gt.append(1)
                prob.append(max(c.probability for c in matches) if found else -1.0)
                skip.append(not found)
        for c in cands2.values():
            gt.append(0)
            prob.append(c.probability)
            skip.append(False)
    local = [(g, p) for g, p, s in zip(gt, prob, skip) if not s]
    total = sum(gt)
    fps, sens = [0.0], [0.0]
    for t in sorted({p for _, p in local}, reverse=True):
        fps.append(sum(1 for g, p in local if g == 0 and p >= t) / len(series))
        sens.append(sum(1 for g, p in local if g == 1 and p >= t) / total)
    return np.interp(FROC_FPS, fps, sens)


def random_case(rng, n_scans=12, n_det=(0, 25)):
    series = [f"s{k}" for k in range(n_scans)]
    ann_rows, exc_rows, det_rows = [], [], []
    for uid in series:
        for _ in range(rng.integers(0, 3)):
            centre = rng.uniform(-60, 60, 3)
            ann_rows.append((uid, *centre, float(rng.uniform(4, 20))))
        for _ in range(rng.integers(0, 2)):
            centre = rng.uniform(-60, 60, 3)
            exc_rows.append((uid, *centre, float(rng.choice([-1.0, rng.uniform(3, 10)]))))
        targets = [r[1:4] for r in ann_rows + exc_rows if r[0] == uid]
        for _ in range(rng.integers(*n_det)):
            if targets and rng.random() < 0.4:
                centre = np.asarray(targets[rng.integers(len(targets))]) + rng.normal(0, 3, 3)
            else:
                centre = rng.uniform(-60, 60, 3)
            det_rows.append((uid, *centre, float(np.round(rng.random(), 2))))  # rounded: ties happen
    return dets(*det_rows), anns(*ann_rows), anns(*exc_rows), series


def test_matches_a_literal_reimplementation_of_the_luna16_script():
    rng = np.random.default_rng(7)
    for _ in range(15):
        detections, annotations, excluded, series = random_case(rng)
        if annotations.empty:
            continue
        expected = luna_script_sensitivities(detections, annotations, excluded, series)
        if np.isnan(expected).any():  # the script's 0/0 when nothing is found
            continue
        result = compute_froc(detections, annotations, series, excluded=excluded)
        np.testing.assert_allclose(result["sensitivities"], expected, atol=1e-12)


def test_interp_froc_equals_numpy_interp_on_repeated_points():
    fps = np.array([0, 0, 0.25, 0.25, 0.25, 0.5, 1.0, 1.0, 3.0])
    sens = np.array([0, 0.1, 0.1, 0.2, 0.3, 0.3, 0.4, 0.6, 0.7])
    x = np.r_[FROC_FPS, 0.0, 0.3, 0.75, 2.0, 10.0]
    np.testing.assert_allclose(interp_froc(x, fps, sens), np.interp(x, fps, sens))


# ------------------------------------------------------------------------------------------
# bootstrap, JSON, figure


def test_bootstrap_interval_contains_the_point_estimate():
    rng = np.random.default_rng(3)
    detections, annotations, excluded, series = random_case(rng, n_scans=40, n_det=(2, 30))
    result = bootstrap_froc(detections, annotations, series, excluded=excluded, n_boot=300, seed=1)
    lo, hi = result["cpm_ci"]
    assert lo <= result["cpm"] <= hi and hi - lo > 0
    assert np.all(result["sensitivities_low"] <= result["sensitivities"] + 1e-12)
    assert np.all(result["sensitivities"] <= result["sensitivities_high"] + 1e-12)
    assert result["band_fps"].shape == result["band_low"].shape == result["band_high"].shape
    assert result["bootstrap"]["n_valid"] == 300
    # Same seed, same numbers; the point estimate is compute_froc's.
    again = bootstrap_froc(detections, annotations, series, excluded=excluded, n_boot=300, seed=1)
    assert again["cpm_ci"] == result["cpm_ci"]
    assert result["cpm"] == compute_froc(detections, annotations, series, excluded=excluded)["cpm"]


def test_bootstrap_of_a_perfect_detector_is_degenerate():
    detections = dets(*[(r.seriesuid, r.coordX, r.coordY, r.coordZ, 0.9) for r in NODULES.itertuples()])
    result = bootstrap_froc(detections, NODULES, ["a", "b", "c", "d", "e", "f"], n_boot=50)
    assert result["cpm_ci"] == (1.0, 1.0)


def test_json_and_figure(tmp_path):
    rng = np.random.default_rng(5)
    detections, annotations, excluded, series = random_case(rng, n_scans=10, n_det=(1, 10))
    result = bootstrap_froc(detections, annotations, series, excluded=excluded, n_boot=20)
    text = json.dumps(froc_to_json(result), allow_nan=False)
    back = json.loads(text)
    assert back["cpm"] == pytest.approx(result["cpm"]) and back["curve_thresholds"][0] is None  # inf -> None
    assert len(back["nodules"]) == len(annotations)
    fig = froc_figure(result, title="test")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlim() == pytest.approx((0.125, 8.0))
    from lungmonai.plots import save_figure

    assert save_figure(fig, tmp_path / "froc.png").stat().st_size > 0
    plain = froc_figure(compute_froc(detections, annotations, series))
    save_figure(plain, tmp_path / "plain.png")


def _figure_result():
    rng = np.random.default_rng(5)
    detections, annotations, excluded, series = random_case(rng, n_scans=10, n_det=(1, 10))
    return bootstrap_froc(detections, annotations, series, excluded=excluded, n_boot=20)


def test_figure_long_title_is_wrapped_inside_the_canvas():
    words = ("FROC of the nodule detector on the held-out test series of the synthetic LUNA16 data set "
             "after the second round of hard-negative mining (CPM 0.812)")
    uid = "1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260"  # no place to break
    result = _figure_result()
    fig = froc_figure(result, title=f"{words} {uid}")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig.axes[0].title
    box = title.get_window_extent(renderer)
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    tight = fig.get_tightbbox(renderer)
    assert tight.x0 >= -1e-6 and tight.y0 >= -1e-6
    assert tight.x1 <= fig.bbox_inches.x1 + 1e-6 and tight.y1 <= fig.bbox_inches.y1 + 1e-6
    text = title.get_text()
    assert text.count("\n") >= 3  # wrapped, the counts on a line of their own
    counts = f"{result['detected']}/{result['total_nodules']} nodules reached, 10 scans"
    assert "".join(text.split()) == "".join(f"{words} {uid} {counts}".split())  # nothing lost


def _legend_labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_figure_every_line_and_the_band_are_in_the_legend():
    result = _figure_result()
    fig = froc_figure(result, label="detector")
    ax = fig.axes[0]
    labels = _legend_labels(ax)
    assert len(ax.lines) == 3  # curve, dashed bootstrap mean, the 7 points
    for line in ax.lines:
        assert not line.get_label().startswith("_") and line.get_label() in labels
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert [line.get_label() for line in dashed] == ["bootstrap mean"]
    assert len(ax.collections) == 1 and ax.collections[0].get_label() in labels  # the band
    assert labels[0].startswith("detector: CPM")
    plain = froc_figure(compute_froc(*_plain_case()))
    assert len(plain.axes[0].lines) == 2 and len(_legend_labels(plain.axes[0])) == 2


def _plain_case():
    rng = np.random.default_rng(5)
    detections, annotations, _, series = random_case(rng, n_scans=10, n_det=(1, 10))
    return detections, annotations, series


def test_figure_marks_the_operating_point(tmp_path):
    result = _figure_result()
    fig = froc_figure(result, operating_point=(1.0, 0.8))
    ax = fig.axes[0]
    stars = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(stars) == 1
    np.testing.assert_allclose(np.c_[stars[0].get_xdata(), stars[0].get_ydata()], [[1.0, 0.8]])
    assert stars[0].get_label() == "operating point: 1 FPs/scan, sensitivity 0.800"
    assert stars[0].get_label() in _legend_labels(ax)
    # Beyond the axis: drawn at its edge, the true value in the legend.
    edge = froc_figure(result, operating_point=(0.01, 0.3)).axes[0]
    star = [line for line in edge.lines if line.get_marker() == "*"][0]
    assert star.get_xdata()[0] == FROC_FPS[0] and "0.01 FPs/scan" in star.get_label()
    for bad in ((-1.0, 0.5), (1.0, 1.5), (float("nan"), 0.5)):
        with pytest.raises(ValueError, match="operating point"):
            froc_figure(result, operating_point=bad)
    from lungmonai.plots import save_figure

    assert save_figure(fig, tmp_path / "froc.png").stat().st_size > 0


def test_paired_cpm_difference_resamples_scans_jointly():
    scans = ["a", "b", "c", "d", "e"]
    fps = [("a", FAR, 0, 0, 0.95), ("b", FAR, 0, 0, 0.95), ("e", FAR, FAR, 0, 0.95)]
    # a finds nodules a and b above its false positives; b finds the same and also c
    found = [(r.seriesuid, r.coordX, r.coordY, r.coordZ, 0.99) for r in NODULES.itertuples()]
    worse, better = dets(*fps, *found[:2]), dets(*fps, *found[:3])
    result = paired_cpm_difference(worse, better, NODULES, scans, n_boot=300, seed=1)
    expected = compute_froc(better, NODULES, scans)["cpm"] - compute_froc(worse, NODULES, scans)["cpm"]
    assert result["difference"] == pytest.approx(expected) and expected > 0
    assert result["cpm_a"] == pytest.approx(compute_froc(worse, NODULES, scans)["cpm"])
    # b is never worse on any draw of scans, so a paired interval cannot go below 0
    # (two separate bootstraps would)
    low, high = result["difference_ci"]
    assert 0.0 <= low < high and result["n_valid"] > 250
    same = paired_cpm_difference(worse, worse, NODULES, scans, n_boot=50)
    assert same["difference"] == 0.0 and same["difference_ci"] == (0.0, 0.0)
