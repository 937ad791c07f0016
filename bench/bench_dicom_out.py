"""Seconds the DICOM outputs (``--dicom-out``: SEG and TID 1500 SR) add to one CT, and their sizes.

    python bench/bench_dicom_out.py [--slices 100] [--nodules 5] [--repeats 3] [--threads 2]

Writes a synthetic 512x512x``--slices`` CT series (0.7 mm pixels, 2.5 mm slices, a uniform
-850 HU chest with ``--nodules`` solid spheres of 4-16 mm) as DICOM with pydicom, analyses it with
the bundles' classifier, malignancy and type models and a threshold segmenter (so that exactly the
spheres are the reported nodules, whatever the shipped segmenter makes of a synthetic chest), then
times ``write_reports`` without and with the DICOM outputs, ``--repeats`` times each, no pictures.
The added time covers re-reading the slice headers, mapping each nodule's mask back to the source
slices and building and writing both objects.

Measured on a 2-core machine busy with another job (load ~5), 512x512x100, 5 nodules, 24 SEG
frames, medians of 5, four runs: +0.69 to +0.76 s per CT (one run under heavier load: +1.6 s),
of which 0.20-0.22 s mapping the masks back to the source slices and 0.41-0.52 s building and
writing SEG and SR; the first CT of a run pays about 0.7 s more (importing highdicom and its
tables of the standard). SEG 805 KiB (BINARY, 32 KiB a 512x512 frame), SR 33 KiB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import torch  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

from lungmonai.cli import bundle_settings  # noqa: E402
from lungmonai.io import read_ct  # noqa: E402
from lungmonai.pipeline import analyze_ct, load_models  # noqa: E402
from lungmonai.pipeline.report import _records, source_masks, write_reports  # noqa: E402
from lungmonai.reports.dicom_out import write_dicom_outputs  # noqa: E402

PIXEL_MM, SLICE_MM, BACKGROUND_HU, NODULE_HU = 0.7, 2.5, -850, 40


class ThresholdSegmenter(torch.nn.Module):
    """Logit +10 where the window's middle slice is above -300 HU, else -10."""

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        middle = windows[:, windows.shape[1] // 2:windows.shape[1] // 2 + 1]
        return torch.where(middle > -0.3, 10.0, -10.0)


def write_series(directory: Path, slices: int, nodules: int, seed: int = 0) -> Path:
    """One CT series, one file per slice, with the attributes a scanner writes for SEG and SR."""
    rng = np.random.default_rng(seed)
    hu = np.full((slices, 512, 512), BACKGROUND_HU, np.int16)
    grid = np.ogrid[:slices, :512, :512]
    for _ in range(nodules):
        radius = rng.uniform(2.0, 8.0)
        center = rng.uniform([10, 120, 120], [slices - 10, 392, 392])
        inside = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, center, (SLICE_MM, PIXEL_MM, PIXEL_MM))) <= radius ** 2
        hu[inside] = NODULE_HU
    directory.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.StudyDate, ds.AccessionNumber = "Bench^Patient", "BENCH-1", "20240101", "B1"
        ds.Modality, ds.InstanceNumber = "CT", k + 1
        ds.ImagePositionPatient = [-179.0, -179.0, -250.0 + k * SLICE_MM]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [PIXEL_MM, PIXEL_MM], SLICE_MM
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = hu[k].tobytes()
        ds.save_as(directory / f"slice{k:04d}.dcm", enforce_file_format=True)
    return directory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--nodules", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_dicom_out_") as tmp:
        work = Path(tmp)
        ct = read_ct(write_series(work / "series", args.slices, args.nodules))
        models = replace(load_models(device="cpu"), segmenter=ThresholdSegmenter())
        settings = replace(bundle_settings(), nodule_threshold=0.0, precision="fp32")
        analysis = analyze_ct(ct, models, settings)
        timings: dict[str, list[float]] = {"without": [], "with": []}
        for _ in range(args.repeats):
            for kind, slices in (("without", None), ("with", ct.slice_files)):
                start = time.perf_counter()
                report = write_reports(analysis, work / "out", settings, pictures=False,
                                       type_model=models.nodule_type, dicom_slices=slices)
                timings[kind].append(time.perf_counter() - start)
        records, components = _records(analysis, settings, models.nodule_type)
        parts: dict[str, list[float]] = {"masks back on the source slices": [], "SEG and SR built and written": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            masks = source_masks(analysis, components)
            parts["masks back on the source slices"].append(time.perf_counter() - start)
            start = time.perf_counter()
            write_dicom_outputs(ct.slice_files, records, masks, work / "parts", ct.series_uid)
            parts["SEG and SR built and written"].append(time.perf_counter() - start)
        seg = work / "out" / report["dicom"]["seg"]
        sr = work / "out" / report["dicom"]["sr"]
        added = statistics.median(timings["with"]) - statistics.median(timings["without"])
        print(f"{ct.shape_irc[0]} slices of 512x512, {len(report['nodules'])} nodules "
              f"({int(pydicom.dcmread(seg, stop_before_pixels=True).NumberOfFrames)} SEG frames)")
        print(f"write_reports: {statistics.median(timings['without']):.2f} s without, "
              f"{statistics.median(timings['with']):.2f} s with DICOM outputs (median of {args.repeats}): "
              f"+{added:.2f} s per CT")
        print("of which " + ", ".join(f"{name} {statistics.median(t):.2f} s" for name, t in parts.items())
              + f" (medians; the first call also imports highdicom and its tables: "
              f"{max(timings['with']) - statistics.median(timings['with']):.1f} s more)")
        print(f"SEG {seg.stat().st_size / 1024:.1f} KiB, SR {sr.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
