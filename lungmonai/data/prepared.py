"""The prepared directory every stage reads: checked before use, and no series trained on and evaluated on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lungmonai.tables.splits import SplitLeakError, check_no_leak, load_split

PREPARE_HINT = (
    "create the embedded dataset with `make data` (or `python data_prep/make_synthetic_luna.py --out DIR`), "
    "then `python data_prep/prepare_luna.py --dataset_dir DIR`"
)


def require_prepared(prepared_dir: str | Path) -> Path:
    """The prepared directory, or an error saying which command creates it."""
    prepared = Path(prepared_dir)
    missing = [name for name in ("candidates.csv", "split.json") if not (prepared / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{prepared}: missing {', '.join(missing)}; {PREPARE_HINT}")
    return prepared


def assert_no_leak(prepared_dir: str | Path, train_parts: Sequence[str], eval_parts: Sequence[str]) -> None:
    """Refuse to run when a series would be both trained on and evaluated on; the error names
    the split file."""
    prepared = require_prepared(prepared_dir)
    split_path = prepared / "split.json"
    split = load_split(split_path)
    train = [uid for part in train_parts for uid in split.series_in(part)]
    evaluated = [uid for part in eval_parts for uid in split.series_in(part)]
    try:
        check_no_leak(split, train, evaluated)
    except SplitLeakError as error:
        raise SplitLeakError(f"{split_path}: parts {list(train_parts)} trained on and {list(eval_parts)} "
                             f"evaluated: {error}") from None
