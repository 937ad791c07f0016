"""The training recipe behind the shipped weights: ``python -m lungmonai.recipe``.

From nothing, on the LUNA16-resolution embedded dataset (``bundles/recipe.json``), it runs:

1. generate the development dataset, check it, prepare its table, patient split and crop cache;
2. train the nodule classifier and the segmentation (at once when a GPU is present: neither
   fills one; each bundle's ``configs/recipe.json`` merged over its ``train.json``);
3. mine hard negatives: run that pipeline over the training series and add the components it
   scores highest on no nodule to the candidate table (:mod:`lungmonai.classification.mining`),
   then fine-tune the classifier on them (``nodule_cls/configs/hard_negatives.json``), and
   fine-tune malignancy from that classifier;
4. choose the pipeline's operating point on the validation series, for the stated false
   positives per scan, and write it into the bundles' contract; on the nodules found there,
   choose whether P(malignant) is blended with the measured diameter
   (:mod:`lungmonai.malignancy.size_fusion`), then the P(malignant) threshold that calls the
   stated share of their malignant ones malignant (:mod:`lungmonai.malignancy.operating`);
5. generate the held-out set (LIDC patients the development data does not use) and analyse it
   once, with the chosen settings;
6. write each bundle's provenance and held-out figures into its ``metadata.json``.

Every step is resumable: a finished step is recorded in ``OUT/state.json`` and skipped, a
training resumes from its ``last.pt`` (which keeps the best model's score, so the best
checkpoint survives), and a killed run continues where it stopped. The same seed gives the
same data and split on every machine; the weights themselves differ between machines (thread
counts and CPU or GPU kernels change the arithmetic), so figures are reported per run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lungmonai.cache.atomic import atomic_write_json
from lungmonai.config import find_bundles
from lungmonai.usererrors import run_command
from lungmonai.workflow import run_bundle, run_stage, start_bundle

STEPS = ("generate", "check", "prepare", "classifier", "segmentation", "mine", "hard_negatives", "malignancy",
         "operating_point", "size_fusion", "malignancy_threshold", "heldout", "evaluate", "record")
TRAINED = {"classifier": "nodule_cls", "segmentation": "nodule_seg", "malignancy": "nodule_malignancy"}
RECIPE_CONFIGS = ("train.json", "recipe.json")
HARD_NEGATIVES_CONFIG = "hard_negatives.json"
HARD_NEGATIVES_DIR = "models/hard_negatives"


@dataclass
class Recipe:
    """One run of the recipe: its settings, where it writes, and what it has done (``state``)."""

    bundles: Path
    out: Path
    settings: dict[str, Any]
    workers: int | None = None
    parallel: bool = False
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> Path:
        return Path(self.settings["dataset"]["dir"]).resolve()

    @property
    def heldout(self) -> Path:
        return Path(self.settings["heldout"]["dir"]).resolve()

    @property
    def state_path(self) -> Path:
        return self.out / "state.json"

    def load_state(self) -> None:
        self.state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {"steps": {}}

    def done(self, step: str) -> bool:
        return step in self.state["steps"]

    def mark(self, step: str, seconds: float, **facts: Any) -> None:
        """Record ``step`` as finished (atomically: a kill never leaves a half-written state)."""
        # The machine per step: a run resumed elsewhere finishes its steps on another one.
        self.state["steps"][step] = {"seconds": round(seconds, 1), "finished": _now(), "machine": machine(), **facts}
        self.state.setdefault("machine", machine())
        self.state["overrides"] = self.overrides
        atomic_write_json(self.state_path, self.state)

    def train_overrides(self, bundle: str) -> dict[str, Any]:
        return {"resume": True, **self.overrides.get(bundle, {})}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def machine() -> dict[str, Any]:
    """Where the weights were made: they differ between machines, so their record names it."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return {"cpu": platform.processor() or platform.machine(), "cores": cores, "gpu": gpu,
            "python": platform.python_version(), "torch": torch.__version__}


def load_settings(bundles: Path) -> dict[str, Any]:
    return json.loads((bundles / "recipe.json").read_text())


# ---- the steps ---------------------------------------------------------------------------

def _generate(r: Recipe) -> dict[str, Any]:
    from lungmonai.synth import generate_dataset

    d = r.settings["dataset"]
    if _generated_as(r.dataset, d["series"], d["seed"], d["mode"]):
        print(f"using the dataset already generated in {r.dataset}")
        return {}
    summary = generate_dataset(r.dataset, d["series"], mode=d["mode"], seed=d["seed"], workers=r.workers, montage=False)
    print(json.dumps(summary, indent=1))
    return {"summary": summary}


def _generated_as(dataset: Path, series: int, seed: int, mode: str) -> bool:
    """``dataset`` holds a complete generated dataset of these settings (the manifest is written
    last); one of other settings is refused rather than trained on by mistake."""
    manifest = dataset / "manifest.json"
    if not manifest.is_file():
        return False
    m = json.loads(manifest.read_text())
    found = (len(m.get("series", [])), m.get("seed"), m.get("mode"))
    if found != (series, seed, mode):
        raise SystemExit(f"{manifest}: the dataset there has {found[0]} series, seed {found[1]}, mode {found[2]}; "
                         f"the recipe asks for {series}, {seed}, {mode} (move it away or change bundles/recipe.json)")
    return True


def _check(r: Recipe) -> dict[str, Any]:
    from lungmonai.tables.check import check_dataset

    report = check_dataset(r.dataset)
    print(report.format())
    if not report.ok:
        raise SystemExit(f"{r.dataset}: the dataset check found problems (listed above)")
    return {}


def _prepare(r: Recipe) -> dict[str, Any]:
    from lungmonai.tables.prepare import format_summary

    print(format_summary(_prepare_dataset(r)))
    return {}


def _prepare_dataset(r: Recipe) -> dict[str, Any]:
    """Table, split (kept once made) and cache of the development dataset, on the grid of the
    bundles being trained (not the installed ones')."""
    from lungmonai.config import contract
    from lungmonai.tables.prepare import prepare_dataset

    return prepare_dataset(r.dataset, seed=r.settings["dataset"]["seed"], fractions=r.settings["dataset"]["fractions"],
                           workers=r.workers, grid_spacing_xyz=contract(r.bundles)["grid_spacing_xyz"])


def _train_one(r: Recipe, step: str) -> dict[str, Any]:
    bundle = TRAINED[step]
    run_bundle(r.bundles, r.dataset, bundle, RECIPE_CONFIGS, "training", r.train_overrides(bundle))
    return {}


def _train_together(r: Recipe, steps: Sequence[str]) -> None:
    """Train ``steps`` at once, each logging to OUT/logs/<step>.log; each is marked when it ends
    well. A kill (SIGTERM, Ctrl-C) stops them all; their ``last.pt`` lets the next run resume."""
    logs = r.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    log_files = []
    try:
        for step in steps:
            bundle = TRAINED[step]
            log_files.append(log := open(logs / f"{step}.log", "a"))  # noqa: SIM115 - closed below
            running[step] = (start_bundle(r.bundles, r.dataset, bundle, RECIPE_CONFIGS, "training",
                                          r.train_overrides(bundle), log), time.perf_counter())
        failed = []
        for step, (proc, start) in running.items():
            if proc.wait() == 0:
                r.mark(step, time.perf_counter() - start, parallel_with=[s for s in steps if s != step])
            else:
                failed.append(f"{step} (exit {proc.returncode}; see {logs / (step + '.log')})")
        if failed:
            raise SystemExit(f"training failed: {', '.join(failed)}")
    finally:
        for proc, _ in running.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
        for log in log_files:
            log.close()


def _mine(r: Recipe) -> dict[str, Any]:
    """The trained pipeline's false components on the training series join the candidate table."""
    from lungmonai.classification.mining import mine_hard_negatives
    from lungmonai.tables.prepare import format_summary

    path = mine_hard_negatives(r.dataset, r.bundles, per_ct=int(r.settings["hard_negatives"]["per_ct"]))
    summary = _prepare_dataset(r)  # the kept split; only the changed cache entries are built again
    print(format_summary(summary))
    return {"mined": summary["table"]["mined_negatives_read"], "file": str(path)}


def _hard_negatives(r: Recipe) -> dict[str, Any]:
    """Fine-tune the classifier from its weights with the mined negatives in its table; its own
    resumable checkpoint and best model live in ``models/hard_negatives/``, and the best becomes
    the bundle's ``models/model.pt`` when the fine-tune ends."""
    from lungmonai.cache.atomic import atomic_write_bytes

    bundle = TRAINED["classifier"]
    run_bundle(r.bundles, r.dataset, bundle, (*RECIPE_CONFIGS, HARD_NEGATIVES_CONFIG), "training", r.train_overrides(bundle))
    best = r.bundles / bundle / HARD_NEGATIVES_DIR / "model.pt"
    atomic_write_bytes(r.bundles / bundle / "models/model.pt", best.read_bytes())
    return {}


def _operating_point(r: Recipe) -> dict[str, Any]:
    """Analyse the val series and take the nodule threshold at the stated false positives per scan."""
    from lungmonai.pipeline import evaluate_split, load_models, pipeline_settings
    from lungmonai.pipeline.operating import operating_threshold, write_threshold

    target = float(r.settings["operating_point"]["fp_per_scan"])
    out = r.out / "val"
    # Every candidate gets its P(malignant) (threshold 0), so the size fusion can be chosen on the
    # nodules found at the new operating point, whichever it is.
    metrics = evaluate_split(r.dataset, "val", out, pipeline_settings(r.bundles, nodule_threshold=0.0),
                             load_models(r.bundles), n_boot=int(r.settings["bootstrap"]), reports=False)
    point = operating_threshold(out / "detections.csv", r.dataset, "val", target)
    write_threshold(r.bundles, "nodule_threshold", point["threshold"])
    print(f"operating point on val: P(nodule) >= {point['threshold']:.3f} gives {point['fp_per_scan']:.2f} FP/scan "
          f"at sensitivity {point['sensitivity']:.3f}; written to {r.bundles / 'contract.json'}")
    return {"val_cpm": metrics["cpm"], "val_cpm_ci": metrics["cpm_ci"], **point}


def _size_fusion(r: Recipe) -> dict[str, Any]:
    """Blend P(malignant) with the measured diameter where that beats the image model on the val
    nodules found at the operating point (cross-validated there); the choice goes to the bundle."""
    from lungmonai.config import contract
    from lungmonai.malignancy.size_fusion import FUSION_FILE, fit_from_detections, write_fusion

    try:
        fusion = fit_from_detections(r.dataset, r.out / "val/detections.csv",
                                     contract(r.bundles)["pipeline"]["nodule_threshold"], n_boot=int(r.settings["bootstrap"]))
    except ValueError as error:  # too few nodules found on val to compare: the image model alone
        (r.bundles / FUSION_FILE).unlink(missing_ok=True)  # a choice made for other weights
        print(f"no size fusion: {error}")
        return {"use": False, "skipped": str(error)}
    path = write_fusion(r.bundles, fusion)
    cv = fusion["cv_auc"]
    print(f"size fusion on {fusion['nodules']} val nodules: cross-validated AUC image {cv['image']['auc']:.3f}, "
          f"diameter {cv['diameter']['auc']:.3f}, blend {cv['blend']['auc']:.3f}; "
          f"{'used' if fusion['use'] else 'not used'} (written to {path})")
    return {"use": fusion["use"], "cv_auc": {k: v["auc"] for k, v in cv.items()}}


def _malignancy_threshold(r: Recipe) -> dict[str, Any]:
    """Call findings malignant from the P(malignant) (as the pipeline now reports it, size fusion
    included) at which the stated share of the val malignant nodules found is called malignant."""
    from lungmonai.config import contract
    from lungmonai.malignancy.operating import NoMalignantNodules, threshold_from_detections
    from lungmonai.malignancy.size_fusion import load_fusion
    from lungmonai.pipeline.operating import write_threshold

    target = float(r.settings["operating_point"]["malignant_recall"])
    if not 0.0 < target <= 1.0:  # a wrong setting is an error, not a skipped step
        raise ValueError(f"{r.bundles / 'recipe.json'}: operating_point.malignant_recall must be in (0, 1], got {target}")
    pipeline = contract(r.bundles)["pipeline"]
    try:
        point = threshold_from_detections(r.dataset, r.out / "val/detections.csv", pipeline["nodule_threshold"],
                                          load_fusion(r.bundles), target)
    except NoMalignantNodules as error:  # a small val series: nothing to choose from
        print(f"malignancy threshold left at {pipeline['malignancy_threshold']}: {error}")
        return {"skipped": str(error)}
    path = write_threshold(r.bundles, "malignancy_threshold", point["threshold"])
    benign = point["benign_called_malignant"]
    print(f"malignancy threshold on val: P(malignant) >= {point['threshold']:.3f} calls {point['recall']:.2f} of the "
          f"{point['malignant']} malignant nodules found malignant (target {target})"
          + (f" and {benign:.2f} of the benign ones" if benign is not None else "") + f"; written to {path}")
    return point


def make_heldout(out: Path, settings: dict[str, Any], series: int, seed: int, workers: int | None = None) -> None:
    """Generate (when missing) and split a held-out set of ``series`` series from ``seed``, held out
    from the development selection of the recipe's ``settings``; the recipe and the demo share it."""
    from lungmonai.synth import generate_dataset
    from lungmonai.synth.heldout import Selection, check_held_out_for
    from lungmonai.tables.prepare import format_summary, prepare_dataset

    d = settings["dataset"]
    if (out / "manifest.json").is_file():  # written last: the set is complete
        check_held_out_for(out, Selection(d["series"], d["seed"]))
        print(f"using the held-out set already generated in {out}")
    else:
        summary = generate_dataset(out, series, mode=settings["heldout"]["mode"], seed=seed, workers=workers,
                                   montage=False, held_out_from=Selection(d["series"], d["seed"]))
        print(json.dumps(summary, indent=1))
    print(format_summary(prepare_dataset(out, split_mode="heldout", cache=False)))


def _heldout(r: Recipe) -> dict[str, Any]:
    h = r.settings["heldout"]
    make_heldout(r.heldout, r.settings, h["series"], h["seed"], r.workers)
    return {}


def _evaluate(r: Recipe) -> dict[str, Any]:
    from lungmonai.pipeline import evaluate_split, load_models, pipeline_settings

    metrics = evaluate_split(r.heldout, "test", r.out / "heldout", pipeline_settings(r.bundles), load_models(r.bundles),
                             n_boot=int(r.settings["bootstrap"]))
    froc = metrics["froc"]
    return {"cpm": metrics["cpm"], "cpm_ci": metrics["cpm_ci"], "malignant_recall": metrics["malignant_recall"],
            "fps_per_scan": froc["fps_per_scan"], "sensitivities": froc["sensitivities"],
            "nodules": froc["total_nodules"], "never_reached": froc["total_nodules"] - froc["detected"]}


def _record(r: Recipe) -> dict[str, Any]:
    from lungmonai.recipe_record import write_pipeline_metrics, write_provenance

    for step, bundle in TRAINED.items():
        path = write_provenance(r.bundles, bundle, r.settings, r.state, step)
        print(f"provenance written to {path}")
    print(f"held-out figures written to {write_pipeline_metrics(r.bundles, r.settings, r.state)}")
    return {}


def _run(r: Recipe, steps: Sequence[str]) -> None:
    actions: dict[str, Callable[[Recipe], dict[str, Any]]] = {
        "generate": _generate, "check": _check, "prepare": _prepare,
        "classifier": lambda r: _train_one(r, "classifier"),
        "segmentation": lambda r: _train_one(r, "segmentation"),
        "malignancy": lambda r: _train_one(r, "malignancy"),
        "mine": _mine, "hard_negatives": _hard_negatives,
        "operating_point": _operating_point, "size_fusion": _size_fusion,
        "malignancy_threshold": _malignancy_threshold, "heldout": _heldout, "evaluate": _evaluate, "record": _record,
    }
    todo = [s for s in STEPS if s in steps and not r.done(s)]
    for s in steps:
        if r.done(s):
            print(f"{s}: done on {r.state['steps'][s]['finished']} (recorded in {r.state_path}); skipping")
    together = [s for s in ("classifier", "segmentation") if s in todo] if r.parallel else []
    for step in todo:
        if step in together:
            if step == together[0]:
                run_stage(f"train {' and '.join(together)} at once", lambda: _train_together(r, together))
            continue
        facts: dict[str, Any] = {}

        def action(step: str = step) -> None:
            facts.update(actions[step](r))

        seconds = run_stage(step, action)
        r.mark(step, seconds, **facts)


def _parse_override(text: str) -> tuple[str, str, Any]:
    try:
        target, value = text.split("=", 1)
        bundle, key = target.split(".", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected BUNDLE.KEY=VALUE, e.g. nodule_cls.epochs=4") from None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return bundle, key, parsed


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles_dir", default=None, help="the bundles to train (default: $LUNGMONAI_BUNDLES, else the installed ones)")
    ap.add_argument("--out", default="output/recipe", help="the recipe's state, logs and evaluations")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--workers", type=int, default=None, help="processes for generation and preparation (default: all cores)")
    ap.add_argument("--override", action="append", default=[], type=_parse_override, metavar="BUNDLE.KEY=VALUE",
                    help="change one bundle setting for this run (recorded in the weights' provenance)")
    ap.add_argument("--parallel", choices=("auto", "yes", "no"), default="auto",
                    help="train the classifier and the segmentation at once (auto: when a GPU is present)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        ap.error(f"--steps: unknown {', '.join(unknown)}; the steps are {', '.join(STEPS)}")
    try:
        bundles = find_bundles(args.bundles_dir)
    except FileNotFoundError as error:
        ap.error(f"--bundles_dir {error}")
    overrides: dict[str, dict[str, Any]] = {}
    for bundle, key, value in args.override:
        if bundle not in TRAINED.values():
            ap.error(f"--override {bundle}.{key}: {bundle} is not one of {', '.join(TRAINED.values())}")
        overrides.setdefault(bundle, {})[key] = value
    if args.parallel == "auto":
        import torch

        parallel = torch.cuda.is_available()
    else:
        parallel = args.parallel == "yes"
    recipe = Recipe(bundles, Path(args.out).resolve(), load_settings(bundles), args.workers, parallel, overrides)
    recipe.load_state()
    # SIGTERM (a scheduler's kill, `timeout`) unwinds like Ctrl-C, so running trainings are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _run(recipe, steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command("lungmonai.recipe", main))
