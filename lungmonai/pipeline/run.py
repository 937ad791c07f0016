"""Analyse one CT or a folder of them and leave the reports: the ``lungmonai analyze`` command."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lungmonai.io import read_ct
from lungmonai.pipeline.analysis import PipelineSettings, analyze_ct
from lungmonai.pipeline.models import PipelineModels, load_models
from lungmonai.pipeline.report import summary_line, write_reports

_SUFFIXES = (".mhd", ".mha", ".nii", ".nii.gz")


def find_inputs(path: str | Path) -> list[Path]:
    """A CT file, a DICOM series directory, or a folder holding CT files / DICOM directories."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(_SUFFIXES))
    if files:
        return files
    dicom_dirs = sorted({p.parent for p in path.rglob("*") if p.is_file() and p.suffix.lower() in ("", ".dcm")})
    if dicom_dirs:
        return dicom_dirs
    raise FileNotFoundError(f"{path}: holds no .mhd, NIfTI or DICOM files")


def analyze(
    path: str | Path,
    out_dir: str | Path = "output",
    settings: PipelineSettings = PipelineSettings(),
    models: PipelineModels | None = None,
    pictures: bool = True,
    write_mask: bool = False,
) -> list[dict[str, Any]]:
    """Analyse every CT under ``path``; write the reports into ``out_dir``; print one line per CT."""
    models = models or load_models()
    reports = []
    for source in find_inputs(path):
        start = time.perf_counter()
        ct = read_ct(source)
        analysis = analyze_ct(ct, models, settings)
        analysis.seconds["read"] = time.perf_counter() - start - sum(analysis.seconds.values())
        report = write_reports(analysis, out_dir, settings, pictures=pictures, write_mask=write_mask)
        print(summary_line(report), flush=True)
        reports.append(report)
    return reports
