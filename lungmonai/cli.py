"""``lungmonai analyze PATH [--out DIR]`` and ``lungmonai evaluate``: the pipeline from a shell.
``lungmonai import-book-checkpoint PATH --stage cls|seg|malignancy --out DIR`` turns a checkpoint
trained with the code of *Deep Learning with PyTorch* into a bundles folder for ``--bundles DIR``.

Thresholds come from the bundles' ``contract.json`` (the same settings the pipeline bundle uses),
and any of them can be overridden with a flag. The bundles are ``--bundles DIR``, else the
folder named by ``LUNGMONAI_BUNDLES``, else the ones installed with the package.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path

from lungmonai.config import find_bundles
from lungmonai.pipeline.analysis import PipelineSettings, pipeline_settings
from lungmonai.usererrors import user_error_in


def bundle_settings(bundles_dir: str | Path | None = None) -> PipelineSettings:
    """The pipeline bundle's settings, from ``bundles_dir`` (see :func:`lungmonai.config.find_bundles`)."""
    return pipeline_settings(find_bundles(bundles_dir))


def _switch(text: str) -> bool:
    from lungmonai.config import flag

    try:
        return flag(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _settings(args: argparse.Namespace) -> PipelineSettings:
    overrides = {f.name: getattr(args, f.name) for f in fields(PipelineSettings) if getattr(args, f.name) is not None}
    return replace(bundle_settings(args.bundles), **overrides)


def _check_device(device: str | None) -> None:
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise ValueError(f"--device {device!r}: {error}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this machine has no CUDA GPU (or torch is a CPU build); use cpu")


def _import_book(args: argparse.Namespace) -> int:
    from lungmonai.book.checkpoint import import_book_checkpoint, summary
    from lungmonai.usererrors import user_error_line

    try:
        weights = import_book_checkpoint(args.path, args.stage, args.out, bundles_dir=args.bundles, force=args.force)
    except (OSError, ValueError) as error:  # not a book checkpoint of that stage, a missing file: one line
        line = user_error_line(error)
        if line is None:
            raise
        print(f"lungmonai: error: {line}", file=sys.stderr)
        return 1
    print(f"imported {summary(weights)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lungmonai", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    analyze_p = sub.add_parser("analyze", help="find nodules in a CT (.mhd, NIfTI, DICOM directory, or a folder of them)")
    analyze_p.add_argument("path")
    analyze_p.add_argument("--out", default="output", help="report directory (default: output)")
    analyze_p.add_argument("--mask", action="store_true", help="also write the segmentation mask as NIfTI")
    analyze_p.add_argument("--dicom-out", action="store_true",
                           help="for a DICOM series, also write a DICOM SEG of the nodules and a DICOM SR (TID 1500) "
                                "of their measurements, referencing the series")
    evaluate_p = sub.add_parser("evaluate", help="FROC/CPM and the confusion table on the split's val or test series")
    evaluate_p.add_argument("--dataset_dir", default="data/luna16_synth")
    evaluate_p.add_argument("--part", default="test", choices=("val", "test"))
    evaluate_p.add_argument("--out", default="output/evaluation")
    evaluate_p.add_argument("--n_boot", type=int, default=1000)
    book_p = sub.add_parser("import-book-checkpoint",
                            help="make a bundles folder from a checkpoint trained with Deep Learning with PyTorch's code")
    book_p.add_argument("path", help="the book's .state file")
    book_p.add_argument("--stage", required=True, choices=("cls", "seg", "malignancy"),
                        help="which network it is: nodule classifier, segmentation, malignancy classifier")
    book_p.add_argument("--out", required=True, metavar="BUNDLES_DIR",
                        help="the bundles folder to write (made from --bundles on the first import; "
                             "import the other stages into the same one)")
    book_p.add_argument("--bundles", default=None, metavar="DIR",
                        help="the bundles whose configs are copied (default: $LUNGMONAI_BUNDLES, else the installed bundles)")
    book_p.add_argument("--force", action="store_true", help="replace weights an earlier import wrote for this stage")
    for p in (analyze_p, evaluate_p):
        p.add_argument("--device", default=None, help="cpu or cuda:N (default: cuda if available)")
        p.add_argument("--bundles", default=None, metavar="DIR",
                       help="the bundles folder (default: $LUNGMONAI_BUNDLES, else the installed bundles)")
        for f in fields(PipelineSettings):
            # bool("false") is True: switches are read as the bundles' configs read them.
            p.add_argument(f"--{f.name}", type=_switch if isinstance(f.default, bool) else type(f.default), default=None)
    args = ap.parse_args(argv)
    if args.command == "import-book-checkpoint":
        return _import_book(args)
    try:  # impossible values are usage errors, refused before any model loads or CT is read
        settings = _settings(args)
        _check_device(args.device)
    except ValueError as error:
        ap.error(str(error))
    except FileNotFoundError as error:  # --bundles or LUNGMONAI_BUNDLES names no bundles folder
        print(f"lungmonai: error: {error}", file=sys.stderr)
        return 1

    from lungmonai.pipeline import MissingDicomOutputs, UnreadableCTs, analyze, evaluate_split, load_models

    # Wrong paths, unreadable CTs and missing weights are the user's to fix: one line naming
    # the file, not a traceback.
    try:
        if args.command == "analyze":  # finds the inputs before it loads the models
            analyze(args.path, args.out, settings, write_mask=args.mask, device=args.device, bundles_dir=args.bundles,
                    dicom_out=args.dicom_out)
        else:
            if not Path(args.dataset_dir).is_dir():  # before minutes of model loading
                raise FileNotFoundError(f"{args.dataset_dir}: dataset directory not found")
            models = load_models(args.bundles, device=args.device)
            evaluate_split(args.dataset_dir, args.part, args.out, settings, models, n_boot=args.n_boot)
    except (UnreadableCTs, MissingDicomOutputs) as error:
        print(f"lungmonai: error: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError) as error:  # CTReadError, a bad table, a crafted checkpoint
        line = user_error_in(error)  # also through a bundle config's RuntimeError; bugs re-raise
        if line is None:
            raise
        print(f"lungmonai: error: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
