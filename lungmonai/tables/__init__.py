"""Candidate table and the patient-level split file (see docs/data_layout.md)."""

from lungmonai.tables.candidates import (
    COLUMNS,
    CandidateTableError,
    build_candidate_table,
    load_candidate_table,
    save_candidate_table,
)
from lungmonai.tables.splits import (
    Split,
    SplitLeakError,
    assert_disjoint,
    check_no_leak,
    load_split,
    make_split,
    save_split,
)

__all__ = [
    "COLUMNS",
    "CandidateTableError",
    "Split",
    "SplitLeakError",
    "assert_disjoint",
    "build_candidate_table",
    "check_no_leak",
    "load_candidate_table",
    "load_split",
    "make_split",
    "save_candidate_table",
    "save_split",
]
