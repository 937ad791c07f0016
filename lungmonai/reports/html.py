"""Self-contained HTML pages for readers: one per analysed CT and an index of them all.

:func:`write_ct_page` turns the JSON report of :func:`lungmonai.pipeline.report.write_reports`
into ``<stem>_report.html`` beside it: the CT's identity, the exam's Lung-RADS category, a
table of the findings and the picture of each. :func:`write_index` writes ``index.html``
linking every page, with the evaluation's figures when given.

The pages load nothing from elsewhere: no scripts, fonts or stylesheets, the CSS sits in the
page; the only references are the PNG pictures (and ``froc.png``) lying beside them, which a
page names only when the file is there. Every value from a report is HTML-escaped; a missing
value reads "n/a". Pages are written atomically.

The side of a finding is shown only when the report gives it (``side``): that x < 0 is the
patient's right holds only for a scanner origin at the patient's midline, which a CT need not have.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lungmonai.cache.atomic import atomic_write_text
from lungmonai.reports.lungrads import NOT_FOR_CLINICAL_USE, SOURCE, exam_category

MISSING = "n/a"
INDEX_NAME = "index.html"
FROC_NAME = "froc.png"

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1100px; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.4em; border-bottom: 1px solid #ccc; }
.warning { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.5em 0.8em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.facts dt { font-weight: bold; }
dl.facts dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.malignant td { background: #fde8e8; }
.category { font-size: 1.3em; font-weight: bold; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ccc; }
"""


# ------------------------------------------------------------------------------------------
# values


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and not math.isfinite(value))


def _text(value: Any, fmt: str = "") -> str:
    """``value`` as display text (not yet escaped): numbers formatted, missing as n/a."""
    if _missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and fmt:
        return format(value, fmt)
    return str(value)


def _esc(value: Any, fmt: str = "") -> str:
    return html.escape(_text(value, fmt), quote=True)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def page_name(report: Mapping[str, Any]) -> str:
    """``<stem>_report.html``: the series uid with every character but letters, digits, ``.``,
    ``_`` and ``-`` replaced by ``_`` (a uid is no safe file name)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", str(report.get("series_uid") or "ct"))
    return f"{stem}_report.html"


def _src(name: str) -> str:
    """A file name beside the page as an attribute value."""
    return html.escape(quote(name), quote=True)


def exam_lung_rads(report: Mapping[str, Any]) -> str:
    """The exam's Lung-RADS category from the findings' ``lung_rads``; n/a when no finding has one
    (an older report, or none found: a report without findings does not say it was rated), or
    when one is not a category. Findings without a category are named: '4A (3 of 4 findings rated)'."""
    nodules = list(report.get("nodules") or [])
    given = [n.get("lung_rads") for n in nodules if isinstance(n, Mapping) and not _missing(n.get("lung_rads"))]
    if not given:
        return MISSING
    try:
        category = exam_category(str(c) for c in given)
    except ValueError:
        return MISSING
    if len(given) < len(nodules):
        category += f" ({len(given)} of {len(nodules)} findings rated)"
    return category


def _pictures_by_rank(report: Mapping[str, Any], out_dir: Path) -> dict[int, str]:
    """Rank -> PNG name for the pictures listed in the report that lie in ``out_dir``.
    A picture is ``<stem>_nodule<rank>.png``; other names go by their place in the list,
    which follows the ranking. Names with a directory part are ignored."""
    found: dict[int, str] = {}
    for k, name in enumerate(report.get("pictures") or []):
        if not isinstance(name, str) or Path(name).name != name or not name.lower().endswith(".png"):
            continue
        if not (out_dir / name).is_file():
            continue
        match = re.search(r"_nodule(\d+)\.png$", name)
        found.setdefault(int(match.group(1)) if match else k + 1, name)
    return found


def _rank(nodule: Mapping[str, Any]) -> int | None:
    rank = nodule.get("rank")
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else None


def _location(nodule: Mapping[str, Any]) -> str:
    xyz = nodule.get("center_xyz")
    if isinstance(xyz, Sequence) and not isinstance(xyz, str) and len(xyz) == 3 and all(_number(v) for v in xyz):
        text = ", ".join(format(float(v), ".1f") for v in xyz)
    else:
        text = MISSING
    if not _missing(nodule.get("side")):
        text += f" ({nodule['side']})"
    return html.escape(text, quote=True)


def _size(nodule: Mapping[str, Any]) -> str:
    """'long × short (mean m)' when the axes are measured, else the equivalent diameter."""
    long_, short = nodule.get("long_axis_mm"), nodule.get("short_axis_mm")
    if _number(long_) and _number(short):
        text = f"{long_:.1f} × {short:.1f}"
        if _number(nodule.get("mean_diameter_mm")):
            text += f" (mean {nodule['mean_diameter_mm']:.1f})"
        return html.escape(text, quote=True)
    return _esc(nodule.get("diameter_mm"), ".1f")


# ------------------------------------------------------------------------------------------
# pages


def _document(title: str, body: list[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title, quote=True)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
        "",
    ])


def _facts(pairs: Sequence[tuple[str, str]]) -> str:
    """A definition list; values already escaped."""
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in pairs)
    return f'<dl class="facts">{rows}</dl>'


FINDING_COLUMNS = ("Rank", "Location x, y, z (mm)", "Size (mm)", "Volume (mm³)", "Type", "P(nodule)",
                   "P(malignant)", "Lung-RADS")


def _finding_row(nodule: Mapping[str, Any], picture: str | None) -> str:
    rank = _esc(nodule.get("rank"))
    if picture is not None:
        rank = f'<a href="#finding-{rank}">{rank}</a>'
    cells = [
        (rank, "num"),
        (_location(nodule), "num"),
        (_size(nodule), "num"),
        (_esc(nodule.get("volume_mm3"), ".0f"), "num"),
        (_esc(nodule.get("type")), ""),
        (_esc(nodule.get("p_nodule"), ".2f"), "num"),
        (_esc(nodule.get("p_malignant"), ".2f"), "num"),
        (_esc(nodule.get("lung_rads")), ""),
    ]
    row_class = ' class="malignant"' if nodule.get("malignant") is True else ""
    tds = "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>" for v, c in cells)
    return f"<tr{row_class}>{tds}</tr>"


def ct_page_html(report: Mapping[str, Any], out_dir: Path) -> str:
    """The page of one CT (see :func:`write_ct_page`); ``out_dir`` is where its pictures lie."""
    uid = report.get("series_uid")
    nodules = [n for n in report.get("nodules") or [] if isinstance(n, Mapping)]
    pictures = _pictures_by_rank(report, Path(out_dir))
    seconds = report.get("seconds")
    total_s = sum(v for v in seconds.values() if _number(v)) if isinstance(seconds, Mapping) else None
    body = [
        "<header>",
        "<h1>Lung nodule report</h1>",
        f'<p class="warning">{html.escape(NOT_FOR_CLINICAL_USE)}</p>',
        _facts([
            ("Series UID", _esc(uid)),
            ("Source", _esc(report.get("source"))),
            ("Candidates examined", _esc(report.get("candidates"))),
            ("Findings reported", _esc(len(nodules))),
            ("Analysis time (s)", _esc(total_s, ".1f")),
        ]),
        "</header>",
        "<section>",
        "<h2>Exam</h2>",
        f'<p>Lung-RADS category ({html.escape(SOURCE)}): <span class="category" id="exam-category">'
        f"{html.escape(exam_lung_rads(report))}</span></p>",
        "</section>",
        "<section>",
        "<h2>Findings</h2>",
    ]
    if nodules:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in FINDING_COLUMNS)
        rows = [_finding_row(n, pictures.get(_rank(n))) for n in nodules]
        body += ['<table id="findings">', f"<thead><tr>{head}</tr></thead>", "<tbody>", *rows, "</tbody>", "</table>"]
    else:
        body.append("<p>No findings reported.</p>")
    body.append("</section>")
    shown = [(n, pictures[_rank(n)]) for n in nodules if _rank(n) in pictures]
    if shown:
        body += ["<section>", "<h2>Pictures</h2>"]
        for nodule, name in shown:
            rank = _esc(nodule.get("rank"))
            alt = (f"Finding {_text(nodule.get('rank'))}: axial, coronal and sagittal views through its centre, "
                   "the segmentation outlined in red")
            body += [
                f'<figure id="finding-{rank}">',
                f'<img src="{_src(name)}" alt="{html.escape(alt, quote=True)}">',
                f"<figcaption>Finding {rank}: P(nodule) {_esc(nodule.get('p_nodule'), '.2f')}, "
                f"P(malignant) {_esc(nodule.get('p_malignant'), '.2f')}, Lung-RADS {_esc(nodule.get('lung_rads'))}"
                "</figcaption>",
                "</figure>",
            ]
        body.append("</section>")
    settings = report.get("settings")
    if isinstance(settings, Mapping) and settings:
        body += ["<section>", "<details><summary>Analysis settings</summary>",
                 _facts([(str(k), _esc(v)) for k, v in settings.items()]), "</details>", "</section>"]
    return _document(f"Lung nodule report {_text(uid)}", body)


def write_ct_page(report: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``<stem>_report.html`` for one CT's JSON report into ``out_dir`` (where its
    pictures lie) and return its path."""
    out = Path(out_dir)
    return atomic_write_text(out / page_name(report), ct_page_html(report, out))


def _summary(metrics: Mapping[str, Any]) -> list[str]:
    pairs = []
    if not _missing(metrics.get("part")):
        pairs.append(("Evaluated series", _esc(metrics.get("part")) + (
            f" ({_esc(metrics['series'])} CTs)" if not _missing(metrics.get("series")) else "")))
    cpm = _esc(metrics.get("cpm"), ".3f")
    ci = metrics.get("cpm_ci")
    if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2:
        boot = metrics.get("froc", {}).get("bootstrap", {}) if isinstance(metrics.get("froc"), Mapping) else {}
        level = boot.get("confidence", 0.95) if isinstance(boot, Mapping) else 0.95
        level_text = f"{100 * level:g}%" if _number(level) else "95%"
        cpm += f" ({html.escape(level_text)} CI {_esc(ci[0], '.3f')} to {_esc(ci[1], '.3f')})"
    pairs.append(("CPM (LUNA16 FROC)", cpm))
    pairs.append(("Malignant nodules called malignant", _esc(metrics.get("malignant_recall"), ".3f")))
    summary = metrics.get("confusion_summary")
    if isinstance(summary, Mapping):
        for key, value in summary.items():
            pairs.append((str(key).replace("_", " "), _esc(value, ".3f" if isinstance(value, float) else "")))
    return ['<section id="summary">', "<h2>Evaluation</h2>", _facts(pairs), "</section>"]


def index_html(reports: Sequence[Mapping[str, Any]], out_dir: Path, metrics: Mapping[str, Any] | None = None) -> str:
    """The index page (see :func:`write_index`)."""
    out = Path(out_dir)
    body = ["<header>", "<h1>Lung nodule reports</h1>", f'<p class="warning">{html.escape(NOT_FOR_CLINICAL_USE)}</p>',
            "</header>"]
    if metrics is not None:
        body += _summary(metrics)
    froc = next((src for src, path in ((FROC_NAME, out / FROC_NAME), (f"../{FROC_NAME}", out.parent / FROC_NAME))
                 if path.is_file()), None)
    if froc is not None:
        body += ["<section>", "<h2>FROC</h2>",
                 f'<figure><img src="{_src(froc)}" alt="FROC curve: sensitivity against false positives per scan">'
                 "</figure>", "</section>"]
    body += ["<section>", f"<h2>CTs ({len(reports)})</h2>"]
    if reports:
        head = "".join(f"<th>{c}</th>" for c in ("CT", "Findings", "Lung-RADS", "Highest P(malignant)"))
        rows = []
        for report in reports:
            nodules = [n for n in report.get("nodules") or [] if isinstance(n, Mapping)]
            p_mal = [n["p_malignant"] for n in nodules if _number(n.get("p_malignant"))]
            rows.append(
                f'<tr><td><a href="{_src(page_name(report))}">{_esc(report.get("series_uid"))}</a></td>'
                f'<td class="num">{len(nodules)}</td><td>{html.escape(exam_lung_rads(report))}</td>'
                f'<td class="num">{_esc(max(p_mal) if p_mal else None, ".2f")}</td></tr>'
            )
        body += ['<table id="cts">', f"<thead><tr>{head}</tr></thead>", "<tbody>", *rows, "</tbody>", "</table>"]
    else:
        body.append("<p>No CTs analysed.</p>")
    body.append("</section>")
    return _document("Lung nodule reports", body)


def write_index(reports: Sequence[Mapping[str, Any]], out_dir: str | Path,
                metrics: Mapping[str, Any] | None = None) -> Path:
    """Write ``index.html`` into ``out_dir``: each CT with a link to its page (the name
    :func:`write_ct_page` gives it in the same folder), its number of findings and exam category;
    with ``metrics`` (the evaluation's metrics.json) a summary, and ``froc.png`` when it lies in
    ``out_dir`` or its parent."""
    out = Path(out_dir)
    return atomic_write_text(out / INDEX_NAME, index_html(reports, out, metrics))
