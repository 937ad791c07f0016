"""HTML pages of the analysed CTs: every finding listed with its values and picture, every value
escaped, nothing loaded from elsewhere, the index linking each page; and, where chromium is
installed, the page rendered by a real browser, its screenshot kept as
output/test-artifacts/report_page.png."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lungmonai.io.volume import CTVolume, Geometry
from lungmonai.nodule_type import load_default_model
from lungmonai.pipeline.analysis import Analysis, PipelineSettings
from lungmonai.pipeline.report import write_reports
from lungmonai.reports.html import page_name, write_ct_page, write_index

UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "output" / "test-artifacts" / "report_page.png"


class Page(HTMLParser):
    """What a test needs from a page: tags, references, table rows, text of marked elements."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.imgs: list[dict[str, str | None]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.by_id: dict[str, str] = {}
        self.text: list[str] = []
        self._table: str | None = None
        self._in_body_rows = False
        self._cell: list[str] | None = None
        self._id_stack: list[str | None] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        for name in ("src", "href", "data", "action", "poster", "srcset"):
            if a.get(name) is not None:
                self.refs.append((tag, name, a[name]))
        if tag == "img":
            self.imgs.append(a)
        if tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        if tag == "tbody":
            self._in_body_rows = True
        if tag == "tr" and self._in_body_rows and self._table:
            self.tables[self._table].append([])
        if tag in ("td", "th") and self._in_body_rows:
            self._cell = []
        if a.get("id") and tag not in ("table",):
            self.by_id[a["id"]] = ""
        self._id_stack.append(a.get("id"))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "tbody":
            self._in_body_rows = False
        if tag == "table":
            self._table = None
        if self._id_stack:
            self._id_stack.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        for element_id in self._id_stack:
            if element_id in self.by_id:
                self.by_id[element_id] += data


def analysed_report(out: Path, uid: str = UID, type_model=None) -> dict:
    """A real JSON report: write_reports on a small CT with three nodules, read back from disk;
    with ``type_model``, typed and categorised as the pipeline does."""
    rng = np.random.default_rng(0)
    hu = (rng.normal(-800, 40, (24, 48, 48))).astype(np.int16)
    zz, yy, xx = np.mgrid[:24, :48, :48]
    mask = np.zeros(hu.shape, bool)
    for c in ((8, 12, 12), (12, 30, 30), (18, 20, 36)):
        ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 9
        hu[ball], mask[ball] = 40, True
    ct = CTVolume(hu, Geometry((-100.0, -50.0, -200.0), (1.0, 1.0, 1.0)), Path("/data/ct.mhd"), uid)
    candidates = pd.DataFrame({
        "series_uid": uid, "center_x": [-88.0, -70.0, -64.0], "center_y": [-38.0, -20.0, -30.0],
        "center_z": [-192.0, -188.0, -182.0], "center_i": [8.0, 12.0, 18.0], "center_r": [12.0, 30.0, 20.0],
        "center_c": [12.0, 30.0, 36.0], "p_nodule": [0.97, 0.81, 0.64], "p_malignant": [0.91, 0.12, np.nan],
        "voxels": 123, "diameter_mm": [6.2, 5.05, 4.4],
    })
    analysis = Analysis(ct=ct, candidates=candidates, mask=mask)
    write_reports(analysis, out, PipelineSettings(nodule_threshold=0.5), type_model=type_model)
    return json.loads((out / f"{uid}_report.json").read_text(encoding="utf-8"))


def with_measurements(report: dict) -> dict:
    """Measurements and categories set here, whatever the pipeline measured: the first finding
    complete, the second without its axes (the size falls back to diameter_mm), the third none."""
    first, second, third = report["nodules"]
    first.update(long_axis_mm=8.24, short_axis_mm=6.1, mean_diameter_mm=7.17, volume_mm3=181.4,
                 type="solid", lung_rads="3", side="right")
    second.update(long_axis_mm=None, short_axis_mm=None, mean_diameter_mm=None, volume_mm3=None,
                  type="part-solid", lung_rads="4A", side=None)
    for key in ("long_axis_mm", "short_axis_mm", "mean_diameter_mm", "volume_mm3", "type", "lung_rads", "side"):
        third.pop(key, None)
    return report


def local_refs(page: Page) -> list[str]:
    return [value for _, _, value in page.refs if not value.startswith("#")]


def test_page_lists_every_finding_with_its_values_and_picture(tmp_path: Path) -> None:
    report = with_measurements(analysed_report(tmp_path))
    path = write_ct_page(report, tmp_path)
    assert path == tmp_path / f"{UID}_report.html"
    page = Page(path.read_text(encoding="utf-8"))
    rows = page.tables["findings"]
    assert len(rows) == len(report["nodules"]) == 3
    assert [r[0] for r in rows] == ["1", "2", "3"]
    # Rank, location, size, volume, type, P(nodule), P(malignant), Lung-RADS
    assert rows[0] == ["1", "-88.0, -38.0, -192.0 (right)", "8.2 × 6.1 (mean 7.2)", "181", "solid", "0.97", "0.91", "3"]
    assert rows[1] == ["2", "-70.0, -20.0, -188.0", "5.0", "n/a", "part-solid", "0.81", "0.12", "4A"]
    assert rows[2] == ["3", "-64.0, -30.0, -182.0", "4.4", "n/a", "n/a", "0.64", "n/a", "n/a"]
    # The exam: the highest given category, with the unrated finding named.
    assert page.by_id["exam-category"] == "4A (2 of 3 findings rated)"
    text = "".join(page.text)
    assert UID in text and "/data/ct.mhd" in text and "Research use only, not for clinical use" in text
    # One picture per finding, each beside the page, a valid PNG, with alt text.
    assert [img["src"] for img in page.imgs] == report["pictures"] == [f"{UID}_nodule{k}.png" for k in (1, 2, 3)]
    for img in page.imgs:
        assert img.get("alt")
        with Image.open(tmp_path / unquote(img["src"])) as picture:
            picture.verify()
            assert picture.format == "PNG"


def test_exam_category_from_every_finding_and_na_without_categories(tmp_path: Path) -> None:
    report = with_measurements(analysed_report(tmp_path))
    report["nodules"][2]["lung_rads"] = "2"
    assert Page(write_ct_page(report, tmp_path).read_text(encoding="utf-8")).by_id["exam-category"] == "4A"
    for nodule in report["nodules"]:
        nodule.pop("lung_rads", None)
    assert Page(write_ct_page(report, tmp_path).read_text(encoding="utf-8")).by_id["exam-category"] == "n/a"
    empty = dict(report, nodules=[], pictures=[])
    page = Page(write_ct_page(empty, tmp_path).read_text(encoding="utf-8"))
    assert "findings" not in page.tables and "No findings reported." in "".join(page.text)
    assert page.by_id["exam-category"] == "n/a"


def test_hostile_values_are_escaped(tmp_path: Path) -> None:
    hostile = "<script>alert(1)</script>"
    report = {
        "series_uid": hostile, "source": '"><img src=x onerror=alert(2)>', "candidates": 1,
        "settings": {"<b>": "<i>x</i>"},
        "nodules": [{"rank": 1, "center_xyz": [1.0, 2.0, 3.0], "p_nodule": 0.9, "p_malignant": None,
                     "diameter_mm": 5.0, "type": "<b>solid</b>", "lung_rads": "<u>4B</u>", "side": "<em>left</em>"}],
        "pictures": [], "seconds": {"segment": 1.0},
    }
    path = write_ct_page(report, tmp_path)
    assert path.parent == tmp_path and "/" not in path.name and "<" not in path.name and path.name == page_name(report)
    raw = path.read_text(encoding="utf-8")
    assert "<script" not in raw and "<img" not in raw and "<b>" not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    page = Page(raw)
    assert set(page.tags) <= {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "dl", "dt",
                              "dd", "section", "span", "table", "thead", "tbody", "tr", "th", "td", "details",
                              "summary"}
    assert page.imgs == [] and local_refs(page) == []
    text = "".join(page.text)
    assert hostile in text and '"><img src=x onerror=alert(2)>' in text and "<b>solid</b>" in text
    assert page.tables["findings"][0][-1] == "<u>4B</u>"
    index = Page(write_index([report], tmp_path).read_text(encoding="utf-8"))
    assert "script" not in index.tags and local_refs(index) == [page_name(report)]


def test_pages_reference_only_local_files_that_exist_and_load_nothing_from_the_web(tmp_path: Path) -> None:
    reports_dir = tmp_path / "reports"
    report = with_measurements(analysed_report(reports_dir))
    report["pictures"] = report["pictures"] + ["../outside_nodule9.png", "missing_nodule4.png"]
    (reports_dir / f"{UID}_nodule3.png").unlink()  # a picture listed but gone
    for path in (write_ct_page(report, reports_dir), write_index([report], reports_dir)):
        raw = path.read_text(encoding="utf-8")
        page = Page(raw)
        assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
        assert "http://" not in raw and "https://" not in raw and "@import" not in raw and "url(" not in raw
        for value in local_refs(page):
            parts = urlsplit(value)
            assert not parts.scheme and not parts.netloc, value
            assert (path.parent / unquote(parts.path)).is_file(), value
    page = Page((reports_dir / f"{UID}_report.html").read_text(encoding="utf-8"))
    assert [img["src"] for img in page.imgs] == [f"{UID}_nodule1.png", f"{UID}_nodule2.png"]
    # Ranks link to their picture within the page only where there is one.
    anchors = [v for tag, _, v in page.refs if tag == "a"]
    assert anchors == ["#finding-1", "#finding-2"] and {"finding-1", "finding-2"} <= set(page.by_id)


def test_index_links_each_page_with_findings_category_and_the_evaluation(tmp_path: Path) -> None:
    reports_dir = tmp_path / "reports"
    first = with_measurements(analysed_report(reports_dir))
    second = analysed_report(reports_dir, uid="1.2.3.second")
    second["nodules"] = second["nodules"][:1]
    second["nodules"][0]["lung_rads"] = "2"
    pages = [write_ct_page(r, reports_dir) for r in (first, second)]
    metrics = {"part": "test", "series": 2, "cpm": 0.8123, "cpm_ci": [0.7, 0.9], "malignant_recall": 0.5,
               "confusion_summary": {"nodules": 4, "nodule_reached": 0.75, "malignant_kept": None}}
    with Image.new("RGB", (40, 30), "white") as froc:
        froc.save(tmp_path / "froc.png")
    index = Page(write_index([first, second], reports_dir, metrics=metrics).read_text(encoding="utf-8"))
    links = [v for tag, _, v in index.refs if tag == "a"]
    assert links == [p.name for p in pages] and all((reports_dir / v).is_file() for v in links)
    assert index.tables["cts"] == [[UID, "3", "4A (2 of 3 findings rated)", "0.91"], ["1.2.3.second", "1", "2", "0.91"]]
    text = "".join(index.text)
    assert "0.812 (95% CI 0.700 to 0.900)" in text and "nodule reached" in text and "0.750" in text
    assert "Research use only, not for clinical use" in text
    assert [img["src"] for img in index.imgs] == ["../froc.png"]
    ninety = dict(metrics, froc={"bootstrap": {"confidence": 0.9}})
    assert "0.812 (90% CI 0.700 to 0.900)" in "".join(Page(write_index([first], reports_dir, ninety).read_text(encoding="utf-8")).text)
    plain = Page(write_index([first], reports_dir).read_text(encoding="utf-8"))
    assert "summary" not in plain.by_id
    (tmp_path / "froc.png").unlink()
    assert Page(write_index([first], reports_dir).read_text(encoding="utf-8")).imgs == []


CHROMIUM = shutil.which("chromium")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_a_headless_browser_renders_the_page_with_its_pictures(tmp_path: Path) -> None:
    # The page exactly as the pipeline writes it: measured, typed, categorised; its screenshot
    # is kept where a reader of the test run can look at it.
    report = analysed_report(tmp_path, type_model=load_default_model(REPO / "bundles"))
    page = write_ct_page(report, tmp_path)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)  # not last run's
    common = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000"]
    subprocess.run([*common, f"--screenshot={SCREENSHOT}", page.as_uri()], check=True, timeout=180,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size > 10_000
    with Image.open(SCREENSHOT) as image:
        assert image.format == "PNG" and image.size == (1280, 2000)
        grey = np.asarray(image.convert("L"))
    assert grey.std() > 10  # text, a table and pictures, not a blank page
    # The browser's DOM after loading: the same rows and pictures, nothing added.
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], check=True, timeout=180, capture_output=True,
                         encoding="utf-8").stdout
    rendered = Page(dom)
    ranks = [str(n["rank"]) for n in report["nodules"]]
    assert [row[0] for row in rendered.tables["findings"]] == ranks == ["1", "2", "3"]
    assert "script" not in rendered.tags and len(rendered.imgs) == len(report["pictures"]) == 3
    # Every picture decoded by the browser: a copy of the page, beside it, with a probe that
    # writes each image's decoded width into the DOM once the page has loaded.
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", (
        "<script>addEventListener('load', () => { for (const img of document.images) "
        "img.dataset.width = img.complete ? img.naturalWidth : -1; });</script></body>")), encoding="utf-8")
    probed = Page(subprocess.run([*common, "--dump-dom", probe.as_uri()], check=True, timeout=180,
                                 capture_output=True, encoding="utf-8").stdout)
    widths = [int(img["data-width"]) for img in probed.imgs]
    for img, width in zip(probed.imgs, widths, strict=True):
        with Image.open(tmp_path / unquote(img["src"])) as picture:
            assert picture.format == "PNG" and width == picture.width, (img["src"], widths)
