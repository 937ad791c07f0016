"""The end-to-end confusion table (lungmonai.metrics.confusion)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lungmonai.metrics.confusion import (
    CONFUSION_COLUMNS,
    CONFUSION_ROWS,
    confusion_for_ct,
    confusion_from_dict,
    confusion_table,
    confusion_to_dict,
    detection_classes,
    format_confusion,
    sum_confusion,
)

# Nodules of 10 mm: four benign along x, four malignant along y; the last of each is never reached.
TRUTH_XYZ = np.array(
    [[0, 0, 0], [30, 0, 0], [60, 0, 0], [90, 0, 0], [0, 30, 0], [0, 60, 0], [0, 90, 0], [0, 120, 0]], dtype=float
)
TRUTH_DIAM = np.full(8, 10.0)
TRUTH_MAL = np.array([False] * 4 + [True] * 4)
# (x, y, z, p_nodule, p_malignant)
DETECTIONS = np.array(
    [
        [1, 0, 0, 0.2, 0.9],  # benign nodule, filtered out
        [30, 1, 0, 0.8, 0.1],  # benign nodule, predicted benign
        [31, 0, 1, 0.3, 0.99],  # ... a second, filtered mark on it: the higher class counts
        [60, 0, 2, 0.9, 0.9],  # benign nodule, predicted malignant
        [0, 31, 0, 0.1, 0.1],  # malignant nodule, filtered out
        [0, 60, 3, 0.7, 0.2],  # malignant nodule, predicted benign
        [0, 92, 0, 0.7, 0.8],  # malignant nodule, predicted malignant
        [-50, -50, 0, 0.1, 0.9],  # non-nodule, filtered out
        [-60, -50, 0, 0.6, 0.3],  # non-nodule, predicted benign
        [-70, -50, 0, 0.9, 0.95],  # non-nodule, predicted malignant
        [-80, -50, 0, 0.5, 0.5],  # non-nodule, predicted malignant (thresholds are >=)
    ]
)
EXPECTED = np.array([[0, 1, 1, 2], [1, 1, 1, 1], [1, 1, 1, 1]])


def run(detections=DETECTIONS, **kwargs):
    return confusion_for_ct(
        TRUTH_XYZ, TRUTH_DIAM, TRUTH_MAL, detections[:, :3], detections[:, 3], detections[:, 4], **kwargs
    )


def test_every_cell_on_a_crafted_ct():
    matrix = run()
    assert matrix.shape == (3, 4) and matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, EXPECTED)
    assert matrix[1:].sum() == len(TRUTH_XYZ)  # each nodule once


def test_thresholds_move_detections_between_columns():
    low = run(nodule_threshold=0.05)  # nothing filtered out any more
    assert low[:, 1].sum() == 0
    np.testing.assert_array_equal(low[:, 0], EXPECTED[:, 0])
    strict_mal = run(malignancy_threshold=0.999)  # nothing called malignant
    assert strict_mal[:, 3].sum() == 0
    no_model = confusion_for_ct(TRUTH_XYZ, TRUTH_DIAM, TRUTH_MAL, DETECTIONS[:, :3], DETECTIONS[:, 3], None)
    assert no_model[:, 3].sum() == 0 and no_model[:, 2].sum() == EXPECTED[:, 2:].sum()
    np.testing.assert_array_equal(detection_classes([0.4, 0.6, 0.6], [0.9, 0.4, 0.6]), [1, 2, 3])


def test_radius_rule_and_the_books_wider_radius():
    truth = np.array([[0.0, 0.0, 0.0]])
    det_xyz = np.array([[6.0, 0.0, 0.0]])  # 0.6 diameters from a 10 mm nodule
    luna = confusion_for_ct(truth, [10.0], [True], det_xyz, [0.9], [0.9])
    np.testing.assert_array_equal(luna, [[0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    book = confusion_for_ct(truth, [10.0], [True], det_xyz, [0.9], [0.9], radius_factor=0.7)
    np.testing.assert_array_equal(book, [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    edge = confusion_for_ct(truth, [10.0], [False], np.array([[5.0, 0, 0]]), [0.9], [0.1])
    assert edge[1, 0] == 1 and edge[0, 2] == 1  # exactly on the radius: not reached


def test_one_detection_reaching_two_nodules_counts_for_both():
    truth = np.array([[0.0, 0, 0], [6.0, 0, 0]])
    matrix = confusion_for_ct(truth, [10.0, 10.0], [False, True], np.array([[3.0, 0, 0]]), [0.9], [0.2])
    np.testing.assert_array_equal(matrix, [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]])


def test_excluded_findings_and_empty_inputs():
    det_xyz = np.array([[50.0, 0, 0], [80.0, 0, 0]])
    matrix = confusion_for_ct(
        np.zeros((0, 3)), [], [], det_xyz, [0.9, 0.9], [0.1, 0.1], excluded_xyz=[[52.0, 0, 0]], excluded_diameter_mm=[-1.0]
    )
    np.testing.assert_array_equal(matrix, [[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    misses = confusion_for_ct(TRUTH_XYZ, TRUTH_DIAM, TRUTH_MAL, np.zeros((0, 3)), [], None)
    np.testing.assert_array_equal(misses, [[0, 0, 0, 0], [4, 0, 0, 0], [4, 0, 0, 0]])
    assert not confusion_for_ct(np.zeros((0, 3)), [], [], np.zeros((0, 3)), [], None).any()


def test_sum_and_dataframe_form():
    det = pd.DataFrame(DETECTIONS, columns=["center_x", "center_y", "center_z", "p_nodule", "p_malignant"])
    det.insert(0, "series_uid", "ct1")
    extra = pd.DataFrame(
        {"series_uid": ["ct3", "other"], "center_x": [0.0, 0.0], "center_y": [0.0, 0.0], "center_z": [0.0, 0.0],
         "p_nodule": [0.9, 0.9], "p_malignant": [0.1, 0.1]}
    )
    det = pd.concat([det, extra], ignore_index=True)
    ann = pd.DataFrame(TRUTH_XYZ, columns=["coordX", "coordY", "coordZ"])
    ann.insert(0, "seriesuid", "ct1")
    ann["diameter_mm"] = TRUTH_DIAM
    ann["is_malignant"] = TRUTH_MAL
    ann.loc[len(ann)] = ["ct2", 0.0, 0.0, 0.0, 8.0, True]  # ct2: one malignant nodule, no detections
    total = confusion_table(det, ann, ["ct1", "ct2", "ct3"])  # "other" is not evaluated
    expected = EXPECTED + np.array([[0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(total, expected)
    per_ct = [run(), np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]), np.array([[0, 0, 1, 0], [0] * 4, [0] * 4])]
    np.testing.assert_array_equal(sum_confusion(per_ct), expected)
    np.testing.assert_array_equal(sum_confusion([]), np.zeros((3, 4)))
    no_mal = confusion_table(det.drop(columns="p_malignant"), ann, ["ct1"])
    assert no_mal[:, 3].sum() == 0
    with pytest.raises(KeyError, match="malignancy"):
        confusion_table(det, ann.drop(columns="is_malignant"), ["ct1"])
    unknown = ann.astype({"is_malignant": object})
    unknown.loc[0, "is_malignant"] = np.nan  # an unrated nodule must not be counted malignant
    with pytest.raises(ValueError, match="1 row\\(s\\) without a is_malignant value"):
        confusion_table(det, unknown, ["ct1"])


def test_text_and_dict_forms():
    text = format_confusion(EXPECTED, title="validation")
    lines = text.splitlines()
    assert lines[0] == "validation"
    assert len({len(line) for line in lines[1:]}) == 1  # aligned
    for name in CONFUSION_ROWS + CONFUSION_COLUMNS:
        assert name in text
    non_nodule = next(line for line in lines if line.startswith("Non-nodule"))
    assert non_nodule.split("|")[1].strip() == "-"
    data = confusion_to_dict(EXPECTED)
    data = json.loads(json.dumps(data, allow_nan=False))
    assert data["matrix"][0][0] is None and data["counts"]["Malignant"]["Predicted malignant"] == 1
    assert data["summary"]["nodules"] == 8 and data["summary"]["nodule_reached"] == pytest.approx(6 / 8)
    np.testing.assert_array_equal(confusion_from_dict(data), EXPECTED)
