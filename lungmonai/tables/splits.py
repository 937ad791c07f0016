"""The one patient-level split every stage reads: each series in exactly one of train/val/test.

Splitting by series (patient), never by candidate, is what keeps a nodule's neighbours out
of the evaluation set. The split is made once (``prepare_luna.py``) and then only read;
every stage calls :func:`check_no_leak` before it trains or evaluates.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lungmonai.cache.atomic import atomic_write_json

SETS: tuple[str, ...] = ("train", "val", "test")
SPLIT_VERSION = 1
BOOK_VAL_STRIDE = 10


class SplitLeakError(ValueError):
    """A series sits in two sets, or a stage is about to train on an evaluation series."""


def _format_series(uids: Iterable[str], limit: int = 5) -> str:
    uids = sorted(uids)
    more = f" and {len(uids) - limit} more" if len(uids) > limit else ""
    return ", ".join(uids[:limit]) + more


def assert_disjoint(split: "Split | Mapping[str, Iterable[str]]") -> None:
    """Raise :class:`SplitLeakError` naming any series listed twice (in one set or across sets)."""
    sets = split.sets if isinstance(split, Split) else split
    seen: dict[str, str] = {}
    problems: list[str] = []
    for name, members in sets.items():
        for uid in members:
            if uid in seen:
                where = f"twice in {name!r}" if seen[uid] == name else f"in both {seen[uid]!r} and {name!r}"
                problems.append(f"{uid} ({where})")
            else:
                seen[uid] = name
    if problems:
        raise SplitLeakError(f"split is not disjoint: {_format_series(problems)}")


@dataclass(frozen=True)
class Split:
    """Which series belong to train/val/test, plus how the split was made."""

    sets: Mapping[str, tuple[str, ...]]
    mode: str = "stratified"
    seed: int = 0
    fractions: Mapping[str, float] = field(default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15})

    def __post_init__(self) -> None:
        unknown = set(self.sets) - set(SETS)
        if unknown:
            raise ValueError(f"unknown split set(s) {sorted(unknown)}; expected {list(SETS)}")
        sets = {name: tuple(sorted(self.sets.get(name, ()))) for name in SETS}
        assert_disjoint(sets)
        object.__setattr__(self, "sets", sets)

    @classmethod
    def from_assignment(cls, assignment: Mapping[str, str], **kwargs: Any) -> "Split":
        """From ``{series_uid: set_name}`` (the file's ``series`` mapping)."""
        sets: dict[str, list[str]] = {name: [] for name in SETS}
        for uid, name in assignment.items():
            if name not in sets:
                raise ValueError(f"series {uid} assigned to unknown set {name!r}; expected one of {list(SETS)}")
            sets[name].append(uid)
        return cls({k: tuple(v) for k, v in sets.items()}, **kwargs)

    def series_in(self, name: str) -> list[str]:
        if name not in SETS:
            raise ValueError(f"unknown split set {name!r}; expected one of {list(SETS)}")
        return list(self.sets[name])

    def set_of(self, series_uid: str) -> str | None:
        """The set holding ``series_uid``, or None when the split does not know it."""
        for name in SETS:
            if series_uid in self.sets[name]:
                return name
        return None

    @property
    def assignment(self) -> dict[str, str]:
        return {uid: name for name in SETS for uid in self.sets[name]}

    @property
    def all_series(self) -> list[str]:
        return sorted(self.assignment)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SPLIT_VERSION,
            "mode": self.mode,
            "seed": int(self.seed),
            "fractions": {name: float(self.fractions.get(name, 0.0)) for name in SETS},
            "series": dict(sorted(self.assignment.items())),
        }


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, val, test), got {fractions}")
    f = tuple(float(x) for x in fractions)
    if any(x < 0 for x in f) or not math.isclose(sum(f), 1.0, abs_tol=1e-6) or f[0] <= 0:
        raise ValueError(f"fractions must be non-negative, sum to 1 and give train a share, got {f}")
    return f  # type: ignore[return-value]


def series_strata(table: pd.DataFrame, extra_series: Iterable[str] = ()) -> dict[str, str]:
    """Label each series ``malignant`` (has a malignant nodule), ``nodule`` or ``none``."""
    grouped = table.groupby("series_uid")
    has_nodule = grouped["is_nodule"].any()
    has_malignant = (table["is_nodule"] & table["is_malignant"]).groupby(table["series_uid"]).any()
    strata = {
        uid: ("malignant" if has_malignant[uid] else "nodule" if has_nodule[uid] else "none")
        for uid in has_nodule.index
    }
    for uid in extra_series:
        strata.setdefault(str(uid), "none")
    return strata


def _allocate(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Largest-remainder counts per set, giving every set with a share at least one when n >= 3."""
    raw = [n * f for f in fractions]
    counts = [math.floor(x) for x in raw]
    for i in sorted(range(3), key=lambda k: (raw[k] - counts[k], -k), reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    if n >= 3:
        for i in range(3):
            if fractions[i] > 0 and counts[i] == 0:
                donor = int(np.argmax(counts))
                counts[donor] -= 1
                counts[i] += 1
    return counts


def _stratified(strata: Mapping[str, str], seed: int, fractions: tuple[float, float, float]) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for stratum in ("malignant", "nodule", "none"):
        members = sorted(uid for uid, s in strata.items() if s == stratum)
        order = [members[i] for i in rng.permutation(len(members))]
        counts = _allocate(len(order), fractions)
        start = 0
        for name, count in zip(SETS, counts):
            for uid in order[start : start + count]:
                assignment[uid] = name
            start += count
    # Small datasets: make sure each evaluation set holds a nodule (and a malignant one) when
    # train can spare one, by moving a series of that kind out of train.
    for kind in ({"malignant"}, {"malignant", "nodule"}):
        for name, share in zip(SETS[1:], fractions[1:]):
            if share <= 0 or any(strata[u] in kind for u, s in assignment.items() if s == name):
                continue
            in_train = [u for u, s in assignment.items() if s == "train"]
            per_stratum = {k: sum(strata[u] == k for u in in_train) for k in kind}
            # only from a stratum train holds twice, so train keeps every kind it has
            donors = sorted(u for u in in_train if strata[u] in kind and per_stratum[strata[u]] >= 2)
            if donors:
                assignment[donors[int(rng.integers(len(donors)))]] = name
    return assignment


def _book(series: Iterable[str]) -> dict[str, str]:
    """The book's split: every 10th series in sorted order (0, 10, 20, ...) to val."""
    ordered = sorted(set(series))
    return {uid: ("val" if i % BOOK_VAL_STRIDE == 0 else "train") for i, uid in enumerate(ordered)}


def make_split(
    table: pd.DataFrame,
    mode: str = "stratified",
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    *,
    extra_series: Iterable[str] = (),
) -> Split:
    """One entry per series of ``table`` (plus ``extra_series``, e.g. scans with no candidates).

    ``stratified``: series are grouped by has-malignant / has-nodule / none, shuffled with
    ``seed`` and dealt to train/val/test by ``fractions`` within each group, so val and test
    both hold nodules (and malignant ones when labels exist). ``book``: every 10th series in
    sorted uid order to val, the rest to train, no test; ``seed`` and ``fractions`` unused.
    ``heldout``: every series to test (a held-out evaluation set, nothing of it to train on).
    """
    strata = series_strata(table, extra_series)
    if mode == "heldout":
        return Split.from_assignment({uid: "test" for uid in strata}, mode="heldout", seed=int(seed),
                                     fractions={"train": 0.0, "val": 0.0, "test": 1.0})
    if mode == "book":
        n = len(strata)
        n_val = len(range(0, n, BOOK_VAL_STRIDE))
        frac = {"train": (n - n_val) / n if n else 0.9, "val": n_val / n if n else 0.1, "test": 0.0}
        return Split.from_assignment(_book(strata), mode="book", seed=int(seed), fractions=frac)
    if mode != "stratified":
        raise ValueError(f"unknown split mode {mode!r}; expected 'stratified', 'book' or 'heldout'")
    f = _check_fractions(fractions)
    assignment = _stratified(strata, int(seed), f)
    return Split.from_assignment(assignment, mode=mode, seed=int(seed), fractions=dict(zip(SETS, f)))


def save_split(split: Split, path: str | os.PathLike[str]) -> Path:
    assert_disjoint(split)
    return atomic_write_json(path, split.to_json())


def _pairs_keep_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: raw JSON text may repeat a key, which ``json`` would silently collapse."""
    result: dict[str, Any] = {}
    duplicates = []
    for key, value in pairs:
        if key in result:
            duplicates.append(key)
        result[key] = value
    if duplicates:
        result["__duplicate_keys__"] = duplicates
    return result


def load_split(path: str | os.PathLike[str]) -> Split:
    """Read a split file; refuse one where a series appears twice (:class:`SplitLeakError`).

    Accepts the documented form (``"series": {uid: set}``) and a list form
    (``{"train": [...], "val": [...], "test": [...]}``).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_pairs_keep_duplicates)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: split file not found (run data_prep/prepare_luna.py)") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    if "__duplicate_keys__" in data:
        raise SplitLeakError(f"{path}: key(s) repeated at top level: {sorted(set(data['__duplicate_keys__']))}")
    meta = {
        "mode": str(data.get("mode", "unknown")),
        "seed": int(data.get("seed", 0)),
        "fractions": {k: float(v) for k, v in (data.get("fractions") or {}).items() if k in SETS},
    }
    try:
        if isinstance(data.get("series"), dict):
            series = data["series"]
            if "__duplicate_keys__" in series:
                raise SplitLeakError(f"series listed twice: {_format_series(series['__duplicate_keys__'])}")
            return Split.from_assignment(series, **meta)
        if any(isinstance(data.get(name), list) for name in SETS):
            not_lists = [name for name in SETS if not isinstance(data.get(name, []), list)]
            if not_lists:  # a bare uid string would otherwise be read as one series per character
                raise ValueError(f"{not_lists} must be lists of series uids")
            lists = {name: [str(u) for u in data.get(name, [])] for name in SETS}
            assert_disjoint(lists)
            return Split({k: tuple(v) for k, v in lists.items()}, **meta)
    except SplitLeakError as exc:
        raise SplitLeakError(f"{path}: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    raise ValueError(f"{path}: expected a 'series' mapping or 'train'/'val'/'test' lists")


def check_no_leak(split: Split, train_series: Iterable[str], eval_series: Iterable[str] = ()) -> None:
    """Refuse to go on if training would use a series outside ``train`` or evaluation a train series.

    Call before every training or evaluation run with the series it is about to use.
    """
    assert_disjoint(split)
    train_series = set(train_series)
    eval_series = set(eval_series)
    train_set = set(split.sets["train"])
    problems = []
    both = train_series & eval_series
    if both:
        problems.append(f"used for both training and evaluation: {_format_series(both)}")
    outside = train_series - train_set
    if outside:
        where = sorted(f"{u} ({split.set_of(u) or 'not in split'})" for u in outside)
        problems.append(f"training series not in the split's train set: {_format_series(where)}")
    evaluated_train = eval_series & train_set
    if evaluated_train:
        problems.append(f"evaluation series from the train set: {_format_series(evaluated_train)}")
    if problems:
        raise SplitLeakError("; ".join(problems))


def split_counts(split: Split, table: pd.DataFrame | None = None) -> dict[str, dict[str, int]]:
    """Per set: series, and with a table also positives and malignant nodules (for summaries)."""
    counts: dict[str, dict[str, int]] = {}
    for name in SETS:
        members = set(split.sets[name])
        entry = {"series": len(members)}
        if table is not None:
            rows = table[table["series_uid"].isin(members)]
            entry["candidates"] = len(rows)
            entry["positives"] = int(rows["is_nodule"].sum())
            entry["malignant"] = int((rows["is_nodule"] & rows["is_malignant"]).sum())
        counts[name] = entry
    return counts
