"""Fit the nodule-type model on a generated dataset's rated nodules; validate against the readers.

    python -m lungmonai.nodule_type.train --dataset_dir DIR --out FILE [--crops FILE.npz]

``DIR`` is a generated dataset (``manifest.json`` with the LIDC readers' ratings of every
nodule, ``masks/<uid>.mhd`` with each nodule's contour as label k) prepared by
``data_prep/prepare_luna.py`` (``prepared/split.json``). Fitting uses the TRAIN series only;
the hyperparameters (L2 strength, class weighting) are the ones with the lowest class-balanced
log-loss on VAL, and the figures are VAL's (so they are slightly optimistic: VAL chose two
numbers).

Labels. Each reader's texture rating gives a type (1-2 ground-glass, 3 part-solid, 4-5 solid);
a nodule's type is the readers' majority, a tie going to the type of the median rating (the
one the generator drew the nodule's density from). Calcified: at least half the readers rated
a calcification pattern (LIDC 1-5; 6 is absent), the generator's rule.

The nodule's voxels. In the pipeline the type is measured on the nodule's segmentation
component on the working grid. Training cannot run the segmenter (it is trained from these
same contours, and may not exist yet), so it takes what the segmenter learns to reproduce: the
dataset's contour, put on the working grid as the pipeline puts CTs (LPS layout, then the
contract's ``grid_spacing_xyz``; nearest neighbour for the labels, linear for HU). A segmenter
misses or adds about a voxel layer at the edge, so each training nodule is also measured with
its contour dilated and eroded by one voxel (6-neighbour cross; the eroded one when anything is
left), three rows per nodule; VAL is scored on the contour, and on the two variants as a check
of how much an edge layer moves the answer.

Hyperparameters. The L2 penalty's grid starts at 1e-3: the generated images' density follows
the readers' ratings by construction (``lungmonai.synth.nodule_render``), so the classes are
nearly separable and a weaker penalty only sharpens the probabilities, which VAL's log-loss
keeps rewarding while the model gets brittle (at 1e-4, unweighted, it called a 3-voxel
ground-glass nodule without one solid voxel solid). The class weighting (0: every nodule alike,
1: every type the same total weight) is chosen too; a VAL without part-solid nodules cannot
judge that type, so its weighting is chosen on solid and ground-glass alone.

For scale, VAL also gives the readers' own agreement: each reader's type against the majority
of the other readers of the same nodule (ties to the others' median), and the model against
those same leave-one-reader-out majorities, so the two rates are on the same targets.

Nodules under 6 mm are Lung-RADS category 2 whatever their type (1 if calcified), so the
figures are also given for the nodules of 6 mm and more, where the type decides a category.

The model file holds, under ``training``, the data it was fitted on (by name, generator mode and
seed, never a path), the counts, the hyperparameter table and every figure printed here.

``--crops FILE.npz`` keeps the nodules' crops (HU and mask on the working grid; plain arrays,
no pickle): a second run with other settings skips reading the CTs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from lungmonai.nodule_type.features import FEATURES, nodule_features
from lungmonai.nodule_type.model import TYPES, TypeModel, fit_model, save_model

CALCIFICATION_ABSENT = 6
VARIANTS = ("contour", "dilated", "eroded")
L2_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
POWER_GRID = (0.0, 0.5, 1.0)
# Below 6 mm every type is Lung-RADS category 2, so the type changes a category only from there
# on; evaluations also score the nodules of at least this diameter (the dataset's, LUNA16's
# volume-equivalent diameter) apart.
LUNG_RADS_TYPE_MM = 6.0
MARGIN = 2  # voxels of context kept around each contour (room for the dilated variant)


# ---------------------------------------------------------------------------------------------
# Labels from the readers' ratings


def texture_type(texture: int) -> str:
    """LIDC texture rating -> Lung-RADS type: 1-2 ground-glass, 3 part-solid, 4-5 solid."""
    t = int(texture)
    if not 1 <= t <= 5:
        raise ValueError(f"LIDC texture ratings are 1-5, got {texture!r}")
    return "ground-glass" if t <= 2 else "part-solid" if t == 3 else "solid"


def majority_type(textures: Sequence[int]) -> str:
    """The readers' majority type; a tie goes to the type of the median rating (halves up)."""
    if not len(textures):
        raise ValueError("no readings")
    counts = Counter(texture_type(t) for t in textures)
    top = max(counts.values())
    tied = [t for t in TYPES if counts[t] == top]
    if len(tied) == 1:
        return tied[0]
    return texture_type(int(np.floor(np.median(textures) + 0.5)))


def is_calcified(calcifications: Sequence[int]) -> bool:
    """At least half the readers rated a calcification pattern (1-5)."""
    if not len(calcifications):
        raise ValueError("no readings")
    return 2 * sum(int(c) < CALCIFICATION_ABSENT for c in calcifications) >= len(calcifications)


# ---------------------------------------------------------------------------------------------
# Nodule crops on the working grid


@dataclass
class NoduleCrop:
    """One rated nodule: its HU and contour on the working grid (a box around it) and its reads."""

    series_uid: str
    label: int
    part: str
    hu: np.ndarray  # int16
    mask: np.ndarray  # bool
    spacing_irc: np.ndarray
    textures: list[int]
    calcifications: list[int]
    diameter_mm: float

    @property
    def type(self) -> str:
        return majority_type(self.textures)

    @property
    def calcified(self) -> bool:
        return is_calcified(self.calcifications)

    def meta(self) -> dict[str, Any]:
        return {"series_uid": self.series_uid, "label": self.label, "part": self.part,
                "spacing_irc": [float(v) for v in self.spacing_irc], "textures": self.textures,
                "calcifications": self.calcifications, "diameter_mm": self.diameter_mm}


def component_variants(mask: np.ndarray) -> dict[str, np.ndarray]:
    """The contour and the contour dilated / eroded by one voxel (6-neighbour cross); the eroded
    one only when it keeps a voxel."""
    out = {"contour": mask, "dilated": ndimage.binary_dilation(mask)}
    eroded = ndimage.binary_erosion(mask)
    if eroded.any():
        out["eroded"] = eroded
    return out


def _read_labels(path: Path, spacing_xyz: Sequence[float] | None) -> tuple[np.ndarray, Any]:
    from lungmonai.io.grid import array_to_grid
    from lungmonai.io.metaimage import read_metaimage
    from lungmonai.io.orient import array_to_lps

    volume = read_metaimage(path)
    labels, geometry = array_to_lps(volume.hu, volume.geometry)
    return array_to_grid(np.asarray(labels), geometry, spacing_xyz, order=0)


def read_dataset(dataset_dir: str | os.PathLike[str], split: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """The manifest and ``{series_uid: part}`` of the prepared split (``split=False``: every
    series of the manifest, as part "all"), checked."""
    from lungmonai.tables.splits import load_split

    root = Path(dataset_dir)
    path = root / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no manifest; the nodule-type model trains on a generated dataset "
                                "(data_prep/make_synthetic_luna.py), whose manifest carries the readers' ratings") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("nodules"), list):
        raise ValueError(f"{path}: has no 'nodules' list (the readers' ratings of each nodule)")
    if not isinstance(manifest.get("series"), list):
        raise ValueError(f"{path}: has no 'series' list")
    if not split:
        return manifest, {s["series_uid"]: "all" for s in manifest["series"]}
    return manifest, load_split(root / "prepared" / "split.json").assignment


def extract_crops(dataset_dir: str | os.PathLike[str], spacing_xyz: Sequence[float] | None,
                  parts: Iterable[str] | None = ("train", "val"), log: Any = None) -> list[NoduleCrop]:
    """Every rated nodule of the split's ``parts`` (None: of every series, no split needed, part
    "all"): CTs read one at a time, put on the working grid."""
    from lungmonai.io import read_ct
    from lungmonai.io.grid import to_grid
    from lungmonai.io.orient import to_lps

    root = Path(dataset_dir)
    manifest, split = read_dataset(root, split=parts is not None)
    parts = ("all",) if parts is None else tuple(parts)
    files = {s["series_uid"]: s for s in manifest["series"]}
    by_series: dict[str, list[dict[str, Any]]] = {}
    for nodule in manifest["nodules"]:
        if split.get(nodule["series_uid"]) in parts:
            by_series.setdefault(nodule["series_uid"], []).append(nodule)
    crops: list[NoduleCrop] = []
    for k, (uid, nodules) in enumerate(sorted(by_series.items()), start=1):
        series = files.get(uid)
        if series is None:
            raise ValueError(f"{root / 'manifest.json'}: nodules of series {uid}, which the manifest's series list lacks")
        start = time.perf_counter()
        ct = to_grid(to_lps(read_ct(root / series["file"])), spacing_xyz)
        labels, geometry = _read_labels(root / series["mask_file"], spacing_xyz)
        if labels.shape != ct.hu.shape or geometry != ct.geometry:
            raise ValueError(f"{root / series['mask_file']}: label grid {labels.shape} does not match the CT's {ct.hu.shape}")
        for nodule in nodules:
            mask = labels == int(nodule["label"])
            if not mask.any():
                raise ValueError(f"{root / series['mask_file']}: nodule {nodule['label']} of {uid} has no voxel on the working grid")
            box = ndimage.find_objects(mask.astype(np.int8))[0]
            box = tuple(slice(max(b.start - MARGIN, 0), min(b.stop + MARGIN, n)) for b, n in zip(box, mask.shape))
            reads = nodule.get("reads") or []
            if not reads:
                raise ValueError(f"{root / 'manifest.json'}: nodule {nodule['label']} of {uid} has no reads")
            crops.append(NoduleCrop(uid, int(nodule["label"]), split[uid], np.ascontiguousarray(ct.hu[box]),
                                    np.ascontiguousarray(mask[box]), ct.geometry.spacing_irc,
                                    [int(r["texture"]) for r in reads], [int(r["calcification"]) for r in reads],
                                    float(nodule.get("diameter_mm", float("nan")))))
        if log is not None:
            print(f"[{k}/{len(by_series)}] {uid}: {len(nodules)} nodule(s), {time.perf_counter() - start:.1f} s",
                  file=log, flush=True)
        del ct, labels
    return crops


def save_crops(crops: Sequence[NoduleCrop], path: str | os.PathLike[str], key: dict[str, Any]) -> None:
    """Crops as plain arrays (flattened, with shapes) and their metadata as JSON text."""
    shapes = np.array([c.hu.shape for c in crops], dtype=np.int64).reshape(-1, 3)
    meta = json.dumps({"key": key, "crops": [c.meta() for c in crops]})
    tmp = Path(str(path) + ".tmp.npz")
    np.savez_compressed(tmp, meta=np.array(meta), shapes=shapes,
                        hu=np.concatenate([c.hu.ravel() for c in crops]) if crops else np.zeros(0, np.int16),
                        mask=np.concatenate([c.mask.ravel() for c in crops]) if crops else np.zeros(0, bool))
    os.replace(tmp, path)


def load_crops(path: str | os.PathLike[str], key: dict[str, Any]) -> list[NoduleCrop] | None:
    """The crops saved for ``key`` (dataset and grid), or None when the file was made for others."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("key") != key:
            return None
        hu, mask, shapes = data["hu"], data["mask"], data["shapes"]
    crops, offset = [], 0
    for m, shape in zip(meta["crops"], shapes):
        n = int(np.prod(shape))
        crops.append(NoduleCrop(m["series_uid"], m["label"], m["part"], hu[offset:offset + n].reshape(shape),
                                mask[offset:offset + n].reshape(shape), np.array(m["spacing_irc"]),
                                m["textures"], m["calcifications"], m["diameter_mm"]))
        offset += n
    return crops


# ---------------------------------------------------------------------------------------------
# Fitting and figures


def feature_rows(crops: Sequence[NoduleCrop], variants: Sequence[str]) -> tuple[np.ndarray, list[int]]:
    """Feature rows of each crop's ``variants`` (those it has) and the crop index of each row."""
    rows, owner = [], []
    for k, crop in enumerate(crops):
        masks = component_variants(crop.mask)
        for name in variants:
            if name in masks:
                rows.append(nodule_features(crop.hu, masks[name], crop.spacing_irc))
                owner.append(k)
    return np.array(rows, dtype=np.float64).reshape(-1, len(FEATURES)), owner


def balanced_log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean over the classes present of the mean -log p(true class): each class counts alike."""
    eps = 1e-12
    losses = [float(np.mean(-np.log(np.clip(p[y == c, c], eps, 1.0)))) for c in np.unique(y)]
    return float(np.mean(losses))


def type_confusion(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Counts (rows: truth, columns: predicted, both in :data:`TYPES` order), accuracy, per-class recall."""
    matrix = np.zeros((len(TYPES), len(TYPES)), dtype=int)
    for t, p in zip(truth, predicted):
        matrix[TYPES.index(t), TYPES.index(p)] += 1
    n = int(matrix.sum())
    per_class = {t: {"n": int(matrix[k].sum()),
                     "accuracy": None if matrix[k].sum() == 0 else round(float(matrix[k, k] / matrix[k].sum()), 4)}
                 for k, t in enumerate(TYPES)}
    return {"n": n, "accuracy": None if n == 0 else round(float(np.trace(matrix) / n), 4), "per_class": per_class,
            "confusion": {"rows_truth_columns_predicted": list(TYPES), "counts": matrix.tolist()}}


def binary_confusion(truth: Sequence[bool], predicted: Sequence[bool]) -> dict[str, Any]:
    t, p = np.asarray(truth, bool), np.asarray(predicted, bool)
    tp, fn = int(np.sum(t & p)), int(np.sum(t & ~p))
    fp, tn = int(np.sum(~t & p)), int(np.sum(~t & ~p))
    ratio = lambda a, b: None if b == 0 else round(a / b, 4)  # noqa: E731
    return {"n": len(t), "accuracy": ratio(tp + tn, len(t)), "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp), "counts": {"tp": tp, "fn": fn, "fp": fp, "tn": tn}}


def readers_agreement(crops: Sequence[NoduleCrop], model_types: Sequence[str] | None = None,
                      model_calcified: Sequence[bool] | None = None) -> dict[str, Any]:
    """Each reader against the majority of the other readers of the same nodule (nodules with
    two reads or more), and the model's answer for that nodule against the same majorities."""
    truth, reader, model, ctruth, creader, cmodel = [], [], [], [], [], []
    for k, crop in enumerate(crops):
        if len(crop.textures) < 2:
            continue
        for r in range(len(crop.textures)):
            others_t = crop.textures[:r] + crop.textures[r + 1:]
            others_c = crop.calcifications[:r] + crop.calcifications[r + 1:]
            truth.append(majority_type(others_t))
            reader.append(texture_type(crop.textures[r]))
            ctruth.append(is_calcified(others_c))
            creader.append(crop.calcifications[r] < CALCIFICATION_ABSENT)
            if model_types is not None:
                model.append(model_types[k])
            if model_calcified is not None:
                cmodel.append(bool(model_calcified[k]))
    out: dict[str, Any] = {"reads": len(truth), "type": {"readers": type_confusion(truth, reader)},
                           "calcified": {"readers": binary_confusion(ctruth, creader)}}
    if model_types is not None:
        out["type"]["model"] = type_confusion(truth, model)
    if model_calcified is not None:
        out["calcified"]["model"] = binary_confusion(ctruth, cmodel)
    return out


def choose(y_val: np.ndarray, fit: Any) -> tuple[dict[str, float], list[dict[str, float]]]:
    """The (l2, class_weight_power) of the grid with the lowest class-balanced VAL log-loss (ties:
    the stronger penalty, then the weaker weighting); ``fit(l2, power)`` returns VAL probabilities."""
    table = []
    for l2 in L2_GRID:
        for power in POWER_GRID:
            p = fit(l2, power)
            table.append({"l2": l2, "class_weight_power": power, "val_loss": round(balanced_log_loss(p, y_val), 5)})
    best = min(table, key=lambda r: (r["val_loss"], -r["l2"], r["class_weight_power"]))
    return {"l2": best["l2"], "class_weight_power": best["class_weight_power"]}, table


def predictions(model: TypeModel, crops: Sequence[NoduleCrop], variant: str = "contour"
                ) -> tuple[list[NoduleCrop], list[str], list[bool]]:
    """The crops measured with ``variant`` (those that have it), the model's type and calcified for each."""
    x, owner = feature_rows(crops, (variant,))
    kept = [crops[k] for k in owner]
    if not len(x):
        return kept, [], []
    types = [model.classes[int(i)] for i in np.argmax(model.type_probabilities(x), axis=1)]
    return kept, types, [bool(v) for v in model.calcified_probability(x) >= model.calc_threshold]


def scores(model: TypeModel, crops: Sequence[NoduleCrop], variant: str = "contour") -> dict[str, Any]:
    """The model's type and calcified against the readers (majority / at least half)."""
    kept, types, calc = predictions(model, crops, variant)
    return {"type": type_confusion([c.type for c in kept], types),
            "calcified": binary_confusion([c.calcified for c in kept], calc)}


def evaluate(model: TypeModel, crops: Sequence[NoduleCrop]) -> dict[str, Any]:
    """Scores on the contours, the readers' leave-one-out agreement with the model's on the
    same targets, and the scores with one voxel layer more or less at the edge."""
    _, types, calc = predictions(model, crops)
    large = [c for c in crops if c.diameter_mm >= LUNG_RADS_TYPE_MM]
    return {**scores(model, crops), "readers_leave_one_out": readers_agreement(crops, types, calc),
            "edge_layer": {v: scores(model, crops, v) for v in ("dilated", "eroded")},
            f"type_from_{LUNG_RADS_TYPE_MM:g}mm": scores(model, large)["type"]}


def counts(crops: Sequence[NoduleCrop]) -> dict[str, Any]:
    return {"nodules": len(crops), "series": len({c.series_uid for c in crops}),
            "type": {t: sum(c.type == t for c in crops) for t in TYPES}, "calcified": sum(c.calcified for c in crops)}


LABELS = {"type": "readers' majority of LIDC texture (1-2 ground-glass, 3 part-solid, 4-5 solid); "
                  "a tie goes to the type of the median rating",
          "calcified": "at least half the readers rate a calcification pattern (LIDC calcification 1-5)"}


def train(crops: Sequence[NoduleCrop], record: dict[str, Any] | None = None) -> tuple[TypeModel, dict[str, Any]]:
    """Fit on the TRAIN crops (all three variants), choose hyperparameters and report on VAL."""
    train_crops = [c for c in crops if c.part == "train"]
    val_crops = [c for c in crops if c.part == "val"]
    if not train_crops:
        raise ValueError("no rated nodule in the TRAIN series")
    x_tr, own_tr = feature_rows(train_crops, VARIANTS)
    t_tr = [train_crops[k].type for k in own_tr]
    c_tr = [train_crops[k].calcified for k in own_tr]
    x_val, _ = feature_rows(val_crops, ("contour",))
    t_val = [c.type for c in val_crops]

    def fitted(l2: float = 0.1, power: float = 1.0, calc_l2: float = 0.1, calc_power: float = 1.0) -> TypeModel:
        return fit_model(x_tr, t_tr, c_tr, l2=l2, class_weight_power=power, calc_l2=calc_l2,
                         calc_class_weight_power=calc_power)

    selection: dict[str, Any] = {"criterion": "class-balanced log-loss on VAL (contours)", "grid_l2": list(L2_GRID),
                                 "grid_class_weight_power": list(POWER_GRID)}
    default = {"l2": 0.1, "class_weight_power": 1.0}
    type_choice, calc_choice = default, default
    classes = fitted().classes
    known = [k for k, t in enumerate(t_val) if t in classes]  # a VAL type TRAIN lacks cannot be scored by log-loss
    if known:
        y_val = np.array([classes.index(t_val[k]) for k in known])
        type_choice, selection["type_table"] = choose(y_val, lambda l2, pw: fitted(l2, pw).type_probabilities(x_val[known]))

        def calc_p(l2: float, pw: float) -> np.ndarray:
            p1 = fitted(calc_l2=l2, calc_power=pw).calcified_probability(x_val)
            return np.stack([1.0 - p1, p1], axis=1)

        calc_choice, selection["calcified_table"] = choose(np.array([c.calcified for c in val_crops], dtype=int), calc_p)
    else:
        selection["note"] = "no VAL nodule: default hyperparameters"
    selection.update(type=type_choice, calcified=calc_choice)
    model = fitted(type_choice["l2"], type_choice["class_weight_power"], calc_choice["l2"], calc_choice["class_weight_power"])
    report: dict[str, Any] = {
        **(record or {}),
        "labels": LABELS,
        "components": {"train": list(VARIANTS), "val": "contour", "grid": "working grid (contract grid_spacing_xyz)"},
        "counts": {"train": counts(train_crops), "val": counts(val_crops)},
        "selection": selection,
        "train": scores(model, train_crops),
        "val": evaluate(model, val_crops),
    }
    return TypeModel(**{**model.__dict__, "training": report}), report


def _format_type(block: dict[str, Any]) -> str:
    per = ", ".join(f"{t} {v['accuracy'] if v['accuracy'] is not None else 'n/a'} (n={v['n']})"
                    for t, v in block["per_class"].items())
    rows = "\n".join(f"      {t:>12} {' '.join(f'{n:5d}' for n in row)}"
                     for t, row in zip(TYPES, block["confusion"]["counts"]))
    head = "      " + " " * 12 + " " + " ".join(f"{t[:5]:>5}" for t in TYPES)
    return f"accuracy {block['accuracy']} (n={block['n']}); per class: {per}\n{head}\n{rows}"


def _format_binary(block: dict[str, Any]) -> str:
    c = block["counts"]
    return (f"accuracy {block['accuracy']}, sensitivity {block['sensitivity']}, specificity {block['specificity']} "
            f"(TP {c['tp']}, FN {c['fn']}, FP {c['fp']}, TN {c['tn']})")


def format_evaluation(block: dict[str, Any], name: str) -> str:
    """:func:`evaluate`'s figures as text, ``name`` the data they are on."""
    loo = block["readers_leave_one_out"]
    return "\n".join([
        f"{name} type, model vs readers' majority (rows: majority, columns: model):",
        "  " + _format_type(block["type"]),
        f"{name} type, each reader vs the majority of the other readers ({loo['reads']} reads):",
        "  " + _format_type(loo["type"]["readers"]),
        f"{name} type, model vs the same leave-one-reader-out majorities:",
        "  " + _format_type(loo["type"]["model"]),
        f"{name} calcified, model vs readers: " + _format_binary(block["calcified"]),
        f"{name} calcified, each reader vs the others: " + _format_binary(loo["calcified"]["readers"]),
        f"{name} calcified, model vs the same targets: " + _format_binary(loo["calcified"]["model"]),
        f"{name} type, nodules of {LUNG_RADS_TYPE_MM:g} mm and more (below, every type is Lung-RADS 2):",
        "  " + _format_type(block[f"type_from_{LUNG_RADS_TYPE_MM:g}mm"]),
        f"{name} edge layer: " + ", ".join(f"{v} type accuracy {b['type']['accuracy']}, calcified accuracy "
                                          f"{b['calcified']['accuracy']}" for v, b in block["edge_layer"].items()),
    ])


def summary(report: dict[str, Any]) -> str:
    sel = report["selection"]
    return "\n".join([
        f"train: {report['counts']['train']}",
        f"val:   {report['counts']['val']}",
        f"chosen on VAL: type {sel['type']}, calcified {sel['calcified']}",
        format_evaluation(report["val"], "VAL"),
    ])


def crops_for(dataset_dir: str | os.PathLike[str], spacing_xyz: Sequence[float] | None, parts: Iterable[str] | None,
              cache: str | os.PathLike[str] | None) -> tuple[list[NoduleCrop], dict[str, Any]]:
    """The crops of ``parts`` (None: every series), read from ``cache`` when it was made for
    them, else measured (and written to ``cache``); and the manifest."""
    root = Path(dataset_dir)
    manifest, _ = read_dataset(root, split=parts is not None)
    key = {"dataset": str(root.resolve()), "grid_spacing_xyz": spacing_xyz, "manifest_nodules": len(manifest["nodules"]),
           "parts": None if parts is None else sorted(parts)}
    crops = load_crops(cache, key) if cache and Path(cache).is_file() else None
    if crops is None:
        crops = extract_crops(root, spacing_xyz, parts, log=sys.stderr)
        if cache:
            save_crops(crops, cache, key)
    return crops, manifest


def dataset_record(dataset_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> dict[str, Any]:
    """What names the data without a path of this machine."""
    return {"name": Path(dataset_dir).resolve().name, "generator": manifest.get("generator"), "mode": manifest.get("mode"),
            "seed": manifest.get("seed"), "series": len(manifest["series"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset_dir", required=True, help="generated and prepared dataset (manifest.json, masks/, prepared/split.json)")
    ap.add_argument("--out", required=True, help="model JSON to write (the shipped one: bundles/nodule_type/configs/model.json)")
    ap.add_argument("--bundles_dir", default=None, help="bundles whose contract gives the working grid (default: the installed ones)")
    ap.add_argument("--crops", default=None, help="npz keeping the nodules' crops between runs (read when it matches, else written)")
    args = ap.parse_args(argv)

    from lungmonai.config import contract, find_bundles

    spacing = contract(find_bundles(args.bundles_dir))["grid_spacing_xyz"]
    crops, manifest = crops_for(args.dataset_dir, spacing, ("train", "val"), args.crops)
    record = {"dataset": dataset_record(args.dataset_dir, manifest), "grid_spacing_xyz": spacing}
    model, report = train(crops, record)
    save_model(model, args.out)
    print(summary(report))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
