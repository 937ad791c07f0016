"""Segmentation handlers: what an evaluation leaves on disk belongs to that evaluation."""

from __future__ import annotations

from pathlib import Path

from ignite.engine import Engine

from lungmonai.segmentation.handlers import SegmentationOverlayHandler


def test_overlay_without_any_wanted_slice_removes_an_earlier_picture(tmp_path: Path) -> None:
    earlier = tmp_path / "overlays.png"
    earlier.write_bytes(b"an earlier evaluation's overlays")
    handler = SegmentationOverlayHandler(slices=[("1.2.3", 5)], save_path=earlier)
    handler.draw(Engine(lambda e, b: None))  # no batch held slice 5 of 1.2.3
    assert not earlier.exists()
