"""Seconds the pictures and the HTML page add to one CT, and the measured sizes' errors on
phantoms of known size.

    python bench/bench_reports.py [--findings 5 20] [--repeats 3] [--slices 200] [--placements 8]
                                  [--skip timing|phantoms]

Timing: a synthetic full-size CT (512x512x``--slices`` at 0.7x0.7x1.25 mm: soft tissue around
two lungs of -850 HU, noise of 20 HU) holding N nodules of 4-14 mm in the lungs, solid
(40 HU) and ground-glass (-600 HU) in turn, with the analysis mask the grouping would leave
(each nodule eroded as it erodes) and one candidate row per nodule: an ``Analysis`` as the
pipeline hands it to the reports, no trained model needed. The nodule-type model is the
shipped one, so solid nodules get their mediastinal view. Per CT, median of ``--repeats``:

- records: the findings' components, sizes, types and sides (``_records``);
- pictures: every finding's picture drawn and written as PNG (``nodule_picture``, ``save_figure``);
- page: the HTML page (``write_ct_page``);
- write_reports: all of it together with the JSON and the CSV, as ``lungmonai analyze`` does.

Phantoms: spheres of 4, 6, 10, 20 and 30 mm and ellipsoids of 16 x 12 x 8 mm (upright and
turned 29 degrees in plane) and 10 x 8 x 5 mm (turned 57 degrees), voxelised at
0.7x0.7x1.25 and 1.5x1.5x2 mm at ``--placements`` random sub-voxel offsets each, measured by
:func:`lungmonai.reports.measure.nodule_size`; the errors against the true long axis, short
axis, mean diameter and volume are printed as markdown tables, mean [min, max].
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import ndimage  # noqa: E402

from lungmonai.geometry import irc_to_xyz  # noqa: E402
from lungmonai.grouping import erosion_iterations  # noqa: E402
from lungmonai.io.volume import CTVolume, Geometry  # noqa: E402
from lungmonai.nodule_type import load_default_model  # noqa: E402
from lungmonai.pipeline.analysis import Analysis, PipelineSettings  # noqa: E402
from lungmonai.pipeline.report import _records, _ranked_nodules, nodule_picture, write_reports  # noqa: E402
from lungmonai.plots import save_figure  # noqa: E402
from lungmonai.reports.html import write_ct_page  # noqa: E402
from lungmonai.reports.measure import nodule_size  # noqa: E402
from tests.helpers import ellipsoid_mask  # noqa: E402

SPACING_XYZ = (0.7, 0.7, 1.25)


# ------------------------------------------------------------------------------------------
# seconds per CT


def synthetic_analysis(findings: int, slices: int, settings: PipelineSettings, seed: int = 0) -> Analysis:
    """A full-size chest CT with ``findings`` nodules in its lungs, analysed as far as the reports need."""
    rng = np.random.default_rng(seed)
    shape = (slices, 512, 512)
    spacing_irc = np.array(SPACING_XYZ[::-1])
    rows, cols = np.ogrid[:512, :512]
    body = ((rows - 256) / 180) ** 2 + ((cols - 256) / 230) ** 2 <= 1
    lungs = (((rows - 250) / 130) ** 2 + ((np.abs(cols - 256) - 91) / 75) ** 2 <= 1)  # centred 91 px either side
    axial = np.where(lungs, -850, np.where(body, 40, -1000)).astype(np.int16)
    hu = np.broadcast_to(axial, shape) + rng.normal(0, 20, shape).astype(np.int16)
    mask = np.zeros(shape, bool)
    erosion = erosion_iterations(np.array(SPACING_XYZ), settings.erosion_mm)
    lung_rc = np.argwhere(lungs[::8, ::8]) * 8
    centers, diameters = [], []
    for k in range(findings):
        diameter = rng.uniform(4.0, 14.0)
        center = np.array([rng.uniform(20, slices - 20), *lung_rc[rng.integers(len(lung_rc))]], float)
        half = np.ceil(diameter / 2 / spacing_irc).astype(int) + 1
        lo = np.maximum(np.round(center).astype(int) - half, 0)
        hi = np.minimum(np.round(center).astype(int) + half + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), axis=-1)
        ball = (((grid - center) * spacing_irc) ** 2).sum(axis=-1) <= (diameter / 2) ** 2
        hu[box][ball] = 40 if k % 2 == 0 else -600  # solid, ground-glass
        mask[box] |= ndimage.binary_erosion(ball, iterations=erosion) if erosion else ball
        centers.append(center)
        diameters.append(diameter)
    geometry = Geometry((-180.0, -180.0, -300.0), SPACING_XYZ)
    ct = CTVolume(hu, geometry, Path("synthetic.mhd"), "1.2.826.0.1.3680043.2.1125.1")
    centers_irc = np.array(centers)
    xyz = np.array([irc_to_xyz(c, geometry) for c in centers_irc])
    candidates = pd.DataFrame({
        "series_uid": ct.series_uid, "center_x": xyz[:, 0], "center_y": xyz[:, 1], "center_z": xyz[:, 2],
        "center_i": centers_irc[:, 0], "center_r": centers_irc[:, 1], "center_c": centers_irc[:, 2],
        "p_nodule": rng.uniform(0.6, 1.0, findings), "p_malignant": rng.uniform(0.0, 1.0, findings),
        "voxels": 100, "diameter_mm": diameters,
    })
    return Analysis(ct=ct, candidates=candidates, mask=mask)


def time_reports(findings: int, slices: int, repeats: int) -> dict[str, float]:
    """Median seconds of each step of one CT's reports (module docstring)."""
    settings = PipelineSettings(nodule_threshold=0.5, max_pictures=max(findings, 20))
    analysis = synthetic_analysis(findings, slices, settings)
    type_model = load_default_model(REPO / "bundles")
    times: dict[str, list[float]] = {"records": [], "pictures": [], "page": [], "write_reports": []}
    panels = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for _ in range(repeats):
            start = time.perf_counter()
            records, components = _records(analysis, settings, type_model)
            times["records"].append(time.perf_counter() - start)
            centers = _ranked_nodules(analysis, settings)[["center_i", "center_r", "center_c"]].to_numpy()
            start = time.perf_counter()
            names = []
            panels = []
            for record, center, component in zip(records, centers, components):
                figure = nodule_picture(analysis, record, center, component)
                panels.append(len(figure.axes))
                names.append(save_figure(figure, out / f"{analysis.ct.series_uid}_nodule{record['rank']}.png").name)
            times["pictures"].append(time.perf_counter() - start)
            report = json.loads(json.dumps({"series_uid": analysis.ct.series_uid, "source": "synthetic.mhd",
                                             "candidates": findings, "nodules": records, "pictures": names}))
            start = time.perf_counter()
            write_ct_page(report, out)
            times["page"].append(time.perf_counter() - start)
            start = time.perf_counter()
            write_reports(analysis, out, settings, type_model=type_model)
            times["write_reports"].append(time.perf_counter() - start)
    result = {name: statistics.median(values) for name, values in times.items()}
    result["mediastinal_views"] = sum(p == 4 for p in panels)
    return result


# ------------------------------------------------------------------------------------------
# phantoms


PHANTOMS = [(f"sphere {2 * r:g} mm", (r, r, r), 0.0) for r in (2.0, 3.0, 5.0, 10.0, 15.0)] + [
    ("ellipsoid 16x12x8 mm", (8.0, 6.0, 4.0), 0.0),
    ("ellipsoid 16x12x8 mm, 29°", (8.0, 6.0, 4.0), 0.5),
    ("ellipsoid 10x8x5 mm, 57°", (5.0, 4.0, 2.5), 1.0),
]
PHANTOM_SPACINGS_XYZ = [(0.7, 0.7, 1.25), (1.5, 1.5, 2.0)]


def phantom_errors(spacing_xyz: tuple[float, float, float], placements: int, seed: int = 7) -> pd.DataFrame:
    """One row per phantom and placement: measured minus true long, short axis and mean
    diameter (mm), and the volume's error (%)."""
    rng = np.random.default_rng(seed)
    spacing_irc = np.array(spacing_xyz[::-1])
    rows = []
    for name, semi, angle in PHANTOMS:
        volume = 4 / 3 * np.pi * np.prod(semi)
        for _ in range(placements):
            size = nodule_size(ellipsoid_mask(semi, spacing_irc, rng.uniform(-0.5, 0.5, 3), angle), spacing_irc)
            rows.append({
                "phantom": name,
                "long (mm)": size["long_axis_mm"] - 2 * semi[0],
                "short (mm)": size["short_axis_mm"] - 2 * semi[1],
                "mean diameter (mm)": size["mean_diameter_mm"] - (semi[0] + semi[1]),
                "volume (%)": 100 * (size["volume_mm3"] / volume - 1),
            })
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, first: str) -> str:
    """``table`` as a markdown table with ``first`` as the heading of its index."""
    head = [first, *map(str, table.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join([str(index), *map(str, row)]) + " |" for index, row in table.iterrows()]
    return "\n".join(lines)


def error_summary(errors: pd.DataFrame) -> pd.DataFrame:
    """Per phantom (in :data:`PHANTOMS` order), then over all: 'mean [min, max]' of each error."""
    def cell(values: pd.Series) -> str:
        digits = 1 if values.name == "volume (%)" else 2
        return f"{values.mean():+.{digits}f} [{values.min():+.{digits}f}, {values.max():+.{digits}f}]"

    columns = [c for c in errors.columns if c != "phantom"]
    table = errors.groupby("phantom", sort=False)[columns].agg(cell)
    table.loc["all"] = [cell(errors[c]) for c in columns]
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--findings", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--placements", type=int, default=8)
    ap.add_argument("--skip", choices=["timing", "phantoms"])
    args = ap.parse_args()
    if args.skip != "timing":
        rows = {}
        for findings in args.findings:
            result = time_reports(findings, args.slices, args.repeats)
            rows[findings] = {
                "records (s)": f"{result['records']:.2f}",
                "pictures (s)": f"{result['pictures']:.2f}",
                "per picture (s)": f"{result['pictures'] / findings:.3f}",
                "page (s)": f"{result['page']:.4f}",
                "write_reports (s)": f"{result['write_reports']:.2f}",
                "mediastinal views": str(result["mediastinal_views"]),
            }
        print(f"Seconds per CT (512x512x{args.slices} at {'x'.join(map(str, SPACING_XYZ))} mm), "
              f"median of {args.repeats}:\n")
        print(markdown(pd.DataFrame.from_dict(rows, orient="index"), "findings"))
        print()
    if args.skip != "phantoms":
        for spacing in PHANTOM_SPACINGS_XYZ:
            print(f"Measured minus true, {'x'.join(map(str, spacing))} mm, {args.placements} placements each, "
                  "mean [min, max]:\n")
            print(markdown(error_summary(phantom_errors(spacing, args.placements)), "phantom"))
            print()


if __name__ == "__main__":
    main()
