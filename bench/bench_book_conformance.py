"""Does lungmonai, with the checkpoints of *Deep Learning with PyTorch* imported, find what the
book's own end-to-end analysis finds on the same CTs?

    python bench/bench_book_conformance.py --book_repo PATH --dataset_dir DIR [--n 1] [--series UID ...]
        [--seg_state FILE] [--cls_state FILE] [--bundles DIR] [--variants book,own[,shipped]] [--out JSON]

``--book_repo`` is a checkout of the book's code (its ``p2ch13``, ``p2ch14`` and ``util``
packages; the checkpoints default to its ``data/part2/models``). ``--dataset_dir`` is a LUNA16-
format folder (``subset*/<uid>.mhd``, ``annotations.csv``, ``candidates.csv``,
``annotations_with_malignancy.csv``) with 512x512 slices, which the book's code assumes. Without
``--series`` the ``--n`` CTs with the fewest slices that have an annotated nodule are used.

The book's side runs its ``p2ch14.nodule_analysis.NoduleAnalysisApp`` step by step (segment,
group, classify) in a scratch folder laid out as it expects (links to the dataset's files, which
are only read), on the CPU, with these shims for today's libraries: ``numpy.int`` is ``int``,
``torch.load`` maps the published CUDA tensors to the CPU, ``Tensor.cuda`` does nothing, and its
disk cache (``util.disk``, which needs the ``diskcache`` package) is replaced by no caching.

lungmonai's side imports the two checkpoints (``lungmonai.book.import_book_checkpoint``) into
a scratch bundles folder, unless ``--bundles`` names one, and analyses each CT in two ways:

* ``book``: ``lungmonai.pipeline.analyze_ct`` with the imported folder's settings, as
  ``lungmonai analyze --bundles DIR`` runs it: the book's way (whole slices segmented, every
  component classified, no flip averaging);
* ``own``: the same weights with the project's own pipeline settings (only the box around the
  lungs segmented, at most 300 components, the top 32 scored again over the crop's flips,
  float32), on each CT's own voxels, which is what the imported networks were trained on;
* ``shipped`` (with ``--variants``): lungmonai's own shipped weights and settings, as
  ``lungmonai analyze`` runs them, for the CPM beside the book's on the same CTs.

Reported per CT and in total: candidates of each, how many of the book's candidate centres
lungmonai has within half a voxel diagonal (the book reports rounded voxel centres) and the other
way round, the largest P(nodule) difference over those pairs (also split into crops inside the CT
and crops at its faces, which the book shifts inwards and lungmonai pads with air) and how many
cross 0.5, the Dice of the two eroded masks, and LUNA16's CPM of each over these CTs (few CTs:
a rough figure).

Measured on one 112x512x512 CT of the embedded dataset (synthetic CT with LIDC nodules, 3
annotated), 2 CPU cores, before ``restrict_to_lungs`` and an uncapped ``max_components`` were
pipeline settings (the same steps, run by this script then): whole slices and every component
gave the book's mask voxel for voxel (Dice 1.0) and its 985 candidate centres, P(nodule) within
4e-6 for the 645 crops inside the CT and up to 0.48 for crops at its faces (1 of 985 crosses
0.5); the lung box with at most 300 components gave Dice 0.78 and 173 of its 300 centres among
the book's. CPM 0.667 for all three. On 4 held-out CTs through ``analyze_ct`` (``book``): the
same candidates and masks, P(nodule) within 0.013 inside the CT; CPM 0.626 for the book's code,
0.714 for ``book`` and 0.769 for ``own`` (13 nodules; docs/book_checkpoints.md has the table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lungmonai.book import import_book_checkpoint  # noqa: E402
from lungmonai.config import contract  # noqa: E402
from lungmonai.io import read_ct  # noqa: E402
from lungmonai.metrics.froc import compute_froc  # noqa: E402
from lungmonai.pipeline import analyze_ct, load_models, pipeline_settings  # noqa: E402

SEG_STATE = "seg_2020-01-26_19.45.12_w4d3c1-bal_1_nodupe-label_pos-d1_fn8-adam.best.state"
CLS_STATE = "cls_2020-02-06_14.16.55_final-nodule-nonnodule.best.state"
CSV_FILES = ("annotations.csv", "candidates.csv", "annotations_with_malignancy.csv")


def choose_series(dataset_dir: Path, n: int) -> list[str]:
    """The ``n`` CTs with the fewest slices among those with an annotated nodule."""
    annotated = set(pd.read_csv(dataset_dir / "annotations.csv")["seriesuid"].astype(str))
    sized = []
    for mhd in dataset_dir.glob("subset*/*.mhd"):
        if mhd.stem not in annotated:
            continue
        header = dict(line.split(" = ", 1) for line in mhd.read_text().splitlines() if " = " in line)
        sized.append((int(header["DimSize"].split()[-1]), mhd.stem))
    return [uid for _, uid in sorted(sized)[:n]]


# --------------------------------------------------------------------------------------------
# the book's side


def install_book_shims() -> None:
    """What the book's 2020 code needs from today's numpy and torch, on a machine without CUDA."""
    if not hasattr(np, "int"):
        np.int = int  # type: ignore[attr-defined]
    original_load = torch.load

    def load_on_cpu(*args, **kwargs):
        kwargs.setdefault("map_location", "cpu")
        return original_load(*args, **kwargs)

    torch.load = load_on_cpu
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]

    class NoCache:  # the book memoizes CT crops on disk; here every call computes
        def memoize(self, *args, **kwargs):
            return lambda function: function

    disk = types.ModuleType("util.disk")
    disk.getCache = lambda scope: NoCache()  # type: ignore[attr-defined]
    sys.modules["util.disk"] = disk


def book_workdir(dataset_dir: Path, uids: list[str], work: Path) -> Path:
    """A folder laid out as the book's code reads LUNA16 (relative paths), linking to the dataset."""
    luna = work / "data-unversioned/part2/luna"
    for uid in uids:
        (mhd,) = dataset_dir.glob(f"subset*/{uid}.mhd")
        subset = luna / mhd.parent.name
        subset.mkdir(parents=True, exist_ok=True)
        for path in (mhd, mhd.with_suffix(".raw"), mhd.with_suffix(".zraw")):
            if path.exists():
                (subset / path.name).symlink_to(path.resolve())
    csvs = work / "data/part2/luna"
    csvs.mkdir(parents=True, exist_ok=True)
    for name in CSV_FILES:
        (csvs / name).symlink_to((dataset_dir / name).resolve())
    return work


def book_analyses(book_repo: Path, work: Path, uids: list[str], seg_state: Path, cls_state: Path,
                  batch_size: int) -> Iterator[tuple[str, dict]]:
    """The book's ``NoduleAnalysisApp`` steps on each CT in turn: ``(uid, result)`` as each finishes."""
    install_book_shims()
    sys.path.insert(0, str(book_repo))
    here = os.getcwd()
    os.chdir(work)
    try:
        import p2ch14.nodule_analysis as book

        app = book.NoduleAnalysisApp([uids[0], "--num-workers", "0", "--batch-size", str(batch_size),
                                      "--segmentation-path", str(seg_state), "--classification-path", str(cls_state)])
        for uid in uids:
            start = time.perf_counter()
            ct = book.getCt(uid)
            mask = app.segmentCt(ct, uid)
            candidates = app.groupSegmentationOutput(uid, ct, mask)
            scored = app.classifyCandidates(ct, candidates)
            frame = pd.DataFrame({
                "center_x": [float(s[2][0]) for s in scored], "center_y": [float(s[2][1]) for s in scored],
                "center_z": [float(s[2][2]) for s in scored], "p_nodule": [float(s[0]) for s in scored]})
            result = {"mask": np.asarray(mask, dtype=bool), "candidates": frame, "shape_irc": ct.hu_a.shape,
                      "origin_xyz": np.asarray(ct.origin_xyz, dtype=float), "direction": np.asarray(ct.direction_a, dtype=float),
                      "spacing_xyz": np.asarray(ct.vxSize_xyz, dtype=float), "seconds": time.perf_counter() - start}
            print(f"book       {uid}: {len(frame)} candidates, {result['seconds']:.0f} s", flush=True)
            yield uid, result
    finally:
        os.chdir(here)


def run_book(book_repo: Path, work: Path, uids: list[str], seg_state: Path, cls_state: Path, batch_size: int) -> dict:
    return dict(book_analyses(book_repo, work, uids, seg_state, cls_state, batch_size))


# --------------------------------------------------------------------------------------------
# lungmonai's side


def imported_bundles(seg_state: Path, cls_state: Path, work: Path) -> Path:
    bundles = work / "book_bundles"
    import_book_checkpoint(cls_state, "cls", bundles, bundles_dir=REPO / "bundles")
    import_book_checkpoint(seg_state, "seg", bundles)
    return bundles


def run_lungmonai(bundles: Path, dataset_dir: Path, uids: list[str], variants: list[str]) -> dict:
    imported = load_models(bundles, device="cpu", with_malignancy=False)
    own = {**contract(REPO / "bundles")["pipeline"], "precision": "fp32"}
    own.pop("nodule_threshold")  # the imported classifier's own scale: the book's 0.5
    settings = {"book": pipeline_settings(bundles), "own": pipeline_settings(bundles, **own),
                "shipped": pipeline_settings(REPO / "bundles")}
    models = {"book": imported, "own": imported}
    if "shipped" in variants:  # lungmonai's own weights, as `lungmonai analyze` runs them
        models["shipped"] = load_models(REPO / "bundles", device="cpu", with_malignancy=False)
    out: dict[str, dict] = {variant: {} for variant in variants}
    for uid in uids:
        (mhd,) = dataset_dir.glob(f"subset*/{uid}.mhd")
        ct = read_ct(mhd)
        for variant in variants:
            start = time.perf_counter()
            analysis = analyze_ct(ct, models[variant], settings[variant])
            mask, frame = analysis.mask, analysis.candidates
            seconds = time.perf_counter() - start
            out[variant][uid] = {"mask": np.asarray(mask, dtype=bool), "candidates": frame[["center_x", "center_y", "center_z", "p_nodule"]],
                                 "seconds": seconds}
            print(f"{variant:<12}{uid}: {len(frame)} candidates, {seconds:.0f} s", flush=True)
    return out


# --------------------------------------------------------------------------------------------
# comparison


def pairs(a: pd.DataFrame, b: pd.DataFrame, tolerance_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``: the nearest row of ``b`` and whether it lies within ``tolerance_mm``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a), dtype=int), np.zeros(len(a), dtype=bool)
    xa, xb = a[["center_x", "center_y", "center_z"]].to_numpy(), b[["center_x", "center_y", "center_z"]].to_numpy()
    dist = np.linalg.norm(xa[:, None] - xb[None], axis=-1)
    nearest = dist.argmin(1)
    return nearest, dist[np.arange(len(a)), nearest] <= tolerance_mm


def crop_inside(book: dict, crop_shape: tuple[int, int, int] = (32, 48, 48)) -> np.ndarray:
    """For each of the book's candidates: whether its crop lies inside the CT (at the CT's faces
    the book shifts a crop inwards, lungmonai pads it with air)."""
    xyz = book["candidates"][["center_x", "center_y", "center_z"]].to_numpy()
    cri = (xyz - book["origin_xyz"]) @ np.linalg.inv(book["direction"]).T / book["spacing_xyz"]
    centre = np.round(cri[:, ::-1]).astype(int)
    half = np.asarray(crop_shape) // 2
    return np.all((centre - half >= 0) & (centre + half <= np.asarray(book["shape_irc"])), axis=1)


def compare(book: dict, ours: dict) -> dict:
    tolerance = 0.5 * float(np.linalg.norm(book["spacing_xyz"])) + 1e-3
    b, o = book["candidates"], ours["candidates"]
    nearest, matched = pairs(b, o, tolerance)
    _, matched_back = pairs(o, b, tolerance)
    dp = np.abs(b["p_nodule"].to_numpy()[matched] - o["p_nodule"].to_numpy()[nearest[matched]])
    inside = crop_inside(book)[matched]
    crossed = int(np.sum((b["p_nodule"].to_numpy()[matched] >= 0.5) != (o["p_nodule"].to_numpy()[nearest[matched]] >= 0.5)))
    mb, mo = book["mask"], ours["mask"]
    dice = (2 * np.sum(mb & mo) / max(1, mb.sum() + mo.sum())) if mb.shape == mo.shape else float("nan")
    return {"book_candidates": len(b), "ours_candidates": len(o), "tolerance_mm": round(tolerance, 3),
            "book_centres_matched": int(matched.sum()), "ours_centres_matched": int(matched_back.sum()),
            "max_p_nodule_difference": float(dp.max()) if len(dp) else None, "crossing_0.5": crossed,
            "matched_crops_inside": int(inside.sum()),
            "max_p_nodule_difference_inside": float(dp[inside].max()) if inside.any() else None,
            "max_p_nodule_difference_at_faces": float(dp[~inside].max()) if (~inside).any() else None,
            "mask_dice": float(dice), "book_mask_voxels": int(mb.sum()), "ours_mask_voxels": int(mo.sum()),
            "book_seconds": round(book["seconds"], 1), "ours_seconds": round(ours["seconds"], 1)}


def cpm(results: dict, annotations: pd.DataFrame, uids: list[str]) -> float:
    rows = [r["candidates"].assign(seriesuid=uid).rename(columns={"p_nodule": "probability"}) for uid, r in results.items()]
    detections = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["seriesuid", "center_x", "center_y", "center_z", "probability"])
    return float(compute_froc(detections, annotations, uids)["cpm"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--book_repo", type=Path, required=True)
    ap.add_argument("--dataset_dir", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--series", nargs="*", default=None)
    ap.add_argument("--seg_state", type=Path, default=None)
    ap.add_argument("--cls_state", type=Path, default=None)
    ap.add_argument("--bundles", type=Path, default=None, help="an imported bundles folder (default: import into a scratch one)")
    ap.add_argument("--variants", default="book,own")
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seg_state = (args.seg_state or args.book_repo / "data/part2/models" / SEG_STATE).resolve()
    cls_state = (args.cls_state or args.book_repo / "data/part2/models" / CLS_STATE).resolve()
    dataset_dir = args.dataset_dir.resolve()
    uids = args.series or choose_series(dataset_dir, args.n)
    variants = [v for v in args.variants.split(",") if v]
    print(f"CTs: {uids}")
    with tempfile.TemporaryDirectory(prefix="book_conformance_") as tmp:
        work = Path(tmp)
        bundles = args.bundles or imported_bundles(seg_state, cls_state, work)
        ours = run_lungmonai(bundles, dataset_dir, uids, variants)
        book = run_book(args.book_repo.resolve(), book_workdir(dataset_dir, uids, work / "book"), uids, seg_state, cls_state,
                        args.batch_size)
    annotations = pd.read_csv(dataset_dir / "annotations.csv")
    annotations = annotations[annotations["seriesuid"].astype(str).isin(uids)]
    report: dict = {"series": uids, "cpm": {"book's code": cpm(book, annotations, uids)}, "per_ct": {}}
    for variant in variants:
        report["cpm"][f"lungmonai {variant}"] = cpm(ours[variant], annotations, uids)
        if variant != "shipped":  # other weights on another grid: only the CPM compares
            report["per_ct"][variant] = {uid: compare(book[uid], ours[variant][uid]) for uid in uids}
    for variant in report["per_ct"]:
        for uid, figures in report["per_ct"][variant].items():
            print(f"{variant} {uid}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    print("CPM over these CTs: " + ", ".join(f"{k} {v:.3f}" for k, v in report["cpm"].items()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
