"""Analyse one CT or a folder of them and leave the reports: the ``lungmonai analyze`` command."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from lungmonai.io import find_series, read_ct
from lungmonai.io.discover import CT_SUFFIXES, looks_like_dicom
from lungmonai.io.errors import CTReadError
from lungmonai.pipeline.analysis import PipelineSettings, analyze_ct
from lungmonai.pipeline.models import PipelineModels, load_models
from lungmonai.pipeline.report import summary_line, write_reports
from lungmonai.reports.dicom_out import DicomOutputError

_NOT_DICOM = (".raw", ".zraw", ".csv", ".json", ".png", ".txt", ".md", ".py", ".pt")
_OWN_OUTPUTS = ("_mask.nii.gz",)  # what write_reports leaves that looks like a CT


def find_inputs(path: str | Path) -> list[Path]:
    """A CT file, a DICOM series directory, or a folder holding CT files and DICOM directories.

    A LUNA16 dataset folder (one with ``subset*/`` directories) gives its series, as
    :func:`lungmonai.io.find_series` reads them, not the label masks beside them. In any other
    folder, every ``.mhd/.mha/.nii/.nii.gz`` file is one input and every directory holding
    DICOM files (``.dcm``, or DICOM's preamble whatever the name: series are often stored as
    files named by their UIDs) another, so a folder mixing the formats loses none of its CTs.
    Hidden directories and the masks this pipeline writes are left out, so a rerun does not
    analyse its own outputs.
    """
    if not str(path).strip():  # Path("") would be the working directory, analysed whole
        raise FileNotFoundError("no input given (an empty path): pass a CT, a DICOM directory or a folder")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    if any(p.is_dir() for p in path.glob("subset*")):
        series = list(find_series(path).values())
        if not series:
            raise FileNotFoundError(f"{path}: a LUNA16 layout (subset*/) without any .mhd series")
        return series
    files: list[Path] = []
    dicom_dirs: set[Path] = set()
    for p in sorted(path.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(path).parts) or not p.is_file():
            continue
        name = p.name.lower()
        if name.endswith(CT_SUFFIXES):
            if not name.endswith(_OWN_OUTPUTS):
                files.append(p)
        elif p.parent not in dicom_dirs and (p.suffix.lower() == ".dcm" or (
                not name.endswith(_NOT_DICOM) and looks_like_dicom(p))):
            dicom_dirs.add(p.parent)
    if not files and not dicom_dirs:
        raise FileNotFoundError(f"{path}: holds no .mhd, NIfTI or DICOM files")
    return sorted([*files, *dicom_dirs])


class UnreadableCTs(RuntimeError):
    """Some CTs of a folder could not be read; the others were analysed and their reports written."""

    def __init__(self, errors: list[CTReadError], reports: list[dict[str, Any]], out_dir: Path) -> None:
        self.errors = errors
        self.reports = reports
        total = len(errors) + len(reports)
        super().__init__(
            f"{len(errors)} of {total} CTs could not be read (reports of the others are in {out_dir}); "
            f"first: {errors[0]}"
        )


class MissingDicomOutputs(RuntimeError):
    """Some DICOM series lack what a DICOM SEG/SR needs; every other output of theirs, and every
    output of the other CTs, was written."""

    def __init__(self, errors: list[DicomOutputError], reports: list[dict[str, Any]], out_dir: Path) -> None:
        self.errors = errors
        self.reports = reports
        super().__init__(
            f"{len(errors)} of {len(reports)} CTs got no DICOM SEG/SR (their other reports are in {out_dir}); "
            f"first: {errors[0]}"
        )


def analyze(
    path: str | Path,
    out_dir: str | Path = "output",
    settings: PipelineSettings = PipelineSettings(),
    models: PipelineModels | None = None,
    pictures: bool = True,
    write_mask: bool = False,
    device: str | None = None,
    bundles_dir: str | Path | None = None,
    dicom_out: bool = False,
) -> list[dict[str, Any]]:
    """Analyse every CT under ``path``; write the reports into ``out_dir``; print one line per CT.

    In a folder, one unreadable CT must not cost the analysis of the others: it is skipped with
    a line on stderr, and :class:`UnreadableCTs` is raised once the rest are done. A single CT
    that cannot be read raises its :class:`~lungmonai.io.errors.CTReadError` at once.
    Without ``models`` they are loaded (on ``device``, from ``bundles_dir``) once the inputs are
    found, so a wrong path fails before the networks load.

    ``dicom_out``: a DICOM series also gets a DICOM SEG and SR (:mod:`lungmonai.reports.dicom_out`);
    other formats have no DICOM headers to refer to, and one line on stderr says how many inputs
    got none for that reason. A series missing what those objects need keeps its other reports;
    its :class:`~lungmonai.reports.dicom_out.DicomOutputError` is raised after them (one CT), or
    it gets a line on stderr and :class:`MissingDicomOutputs` is raised once every CT is done.
    """
    sources = find_inputs(path)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a directory (the reports go in a folder)")
    models = models or load_models(bundles_dir, device=device)
    reports, errors, written_by = [], [], {}
    dicom_errors: list[DicomOutputError] = []
    not_dicom: list[Path] = []
    for source in sources:
        start = time.perf_counter()
        try:
            ct = read_ct(source)
            if ct.series_uid in written_by:  # the reports are named by series: one would replace the other
                raise CTReadError(source, f"same series name {ct.series_uid!r} as {written_by[ct.series_uid]}, "
                                          "whose reports it would overwrite; analyse it into another --out")
        except CTReadError as error:
            if len(sources) == 1:
                raise
            print(f"skipped {error}", file=sys.stderr, flush=True)
            errors.append(error)
            continue
        written_by[ct.series_uid] = source
        analysis = analyze_ct(ct, models, settings)
        analysis.seconds["read"] = time.perf_counter() - start - sum(analysis.seconds.values())
        if dicom_out and not ct.slice_files:
            not_dicom.append(source)
        report = write_reports(analysis, out_dir, settings, pictures=pictures, write_mask=write_mask,
                               type_model=models.nodule_type,
                               dicom_slices=ct.slice_files if dicom_out and ct.slice_files else None)
        print(summary_line(report), flush=True)
        reports.append(report)
        failed = (report.get("dicom") or {}).get("error")
        if failed:
            error = DicomOutputError(report["dicom"]["file"], failed)
            if len(sources) == 1:
                raise error
            print(error, file=sys.stderr, flush=True)
            dicom_errors.append(error)
    if not_dicom:
        print(f"{not_dicom[0]}: not a DICOM series, so no DICOM SEG/SR"
              + (f" (nor for {len(not_dicom) - 1} other input(s) of other formats)" if len(not_dicom) > 1 else ""),
              file=sys.stderr, flush=True)
    if errors:
        raise UnreadableCTs(errors, reports, Path(out_dir))
    if dicom_errors:
        raise MissingDicomOutputs(dicom_errors, reports, Path(out_dir))
    return reports
