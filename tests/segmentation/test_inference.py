"""segment_ct over a whole CT, the lung box, and NIfTI outputs on the CT's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.networks.nets import UNet

from lungmonai.io import read_ct
from lungmonai.io.volume import CTVolume, Geometry
from lungmonai.segmentation.inference import segment_ct, segment_ct_file, write_like
from lungmonai.segmentation.network import set_output_prior
from lungmonai.segmentation.roi import lung_box

GEOMETRY = Geometry((-120.0, -80.5, -310.0), (0.8, 0.9, 2.5), np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1.0]]))


def _chest(shape: tuple[int, int, int] = (40, 100, 100)) -> np.ndarray:
    """Air around a body (40 HU) holding one lung cavity (-850 HU, ~26 ml) with a nodule."""
    hu = np.full(shape, -1000, dtype=np.int16)
    hu[:, 10:90, 10:90] = 40
    hu[12:28, 35:65, 35:65] = -850
    hu[19:21, 48:51, 45:48] = 30
    return hu


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    net = UNet(spatial_dims=2, in_channels=7, out_channels=1, channels=(4, 8, 16), strides=(2, 2), num_res_units=0, norm="batch")
    return set_output_prior(net, 0.2).eval()


def test_lung_box_finds_the_enclosed_cavity_plus_margin() -> None:
    box = lung_box(_chest(), spacing_irc=(2.5, 0.9, 0.8), margin_mm=5.0, step=2)
    assert box[0] == slice(10, 30)  # slices 12..27, 2 slices (5 mm) of margin
    assert box[1].start <= 35 - 5 and box[1].stop >= 65 + 5 and box[1].stop - box[1].start < 50
    assert box[2].start <= 35 - 6 and box[2].stop >= 65 + 6 and box[2].stop - box[2].start < 50
    assert lung_box(np.full((4, 16, 16), 40, dtype=np.int16), (1, 1, 1)) == (slice(0, 4), slice(0, 16), slice(0, 16))


def test_lung_box_keeps_a_lung_that_reaches_the_edge_of_a_tight_field_of_view() -> None:
    hu = np.full((30, 128, 128), -1000, dtype=np.int16)
    hu[:, 4:124, :] = 40  # the body fills the width of the image
    hu[5:25, 30:90, 0:50] = -850  # a lung cut by the left edge of the field of view
    hu[5:25, 30:90, 75:110] = -850  # the other, enclosed
    box = lung_box(hu, spacing_irc=(2.5, 0.7, 0.7), margin_mm=15.0)
    assert box[2].start == 0 and box[2].stop >= 110  # both lungs; before, columns 0..53 were cut
    assert box[1].start > 4 and box[1].stop < 124  # the air above and below the body still is outside


def test_segment_ct_gives_probabilities_on_the_ct_grid() -> None:
    ct = CTVolume(_chest(), GEOMETRY, Path("chest.mhd"), "chest")
    prob = segment_ct(ct, _network(), batch_size=7, restrict_to_lungs=False)
    assert prob.shape == ct.hu.shape and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0 and prob.std() > 0
    # whole-slice windows padded to the U-Net grid give the same as one slice at a time
    single = segment_ct(ct, _network(), batch_size=1, restrict_to_lungs=False)
    assert np.allclose(prob, single, atol=1e-5)
    boxed = segment_ct(ct, _network(), batch_size=4)
    box = lung_box(ct.hu, GEOMETRY.spacing_irc)
    outside = np.ones(ct.hu.shape, dtype=bool)
    outside[box] = False
    assert outside.any() and np.all(boxed[outside] == 0) and boxed[box].min() > 0


def test_bf16_segmentation_stays_close_to_float32() -> None:
    ct = CTVolume(_chest(), GEOMETRY, Path("chest.mhd"), "chest")
    fp32 = segment_ct(ct, _network(), batch_size=8, restrict_to_lungs=False)
    bf16 = segment_ct(ct, _network(), batch_size=8, restrict_to_lungs=False, precision="bf16")
    assert bf16.dtype == np.float32 and np.abs(bf16 - fp32).max() < 0.03
    assert not np.array_equal(bf16, fp32)  # the U-Net really ran in bfloat16


def test_outputs_keep_the_ct_geometry(tmp_path: Path) -> None:
    hu = _chest()
    image = sitk.GetImageFromArray(hu)
    image.SetOrigin(tuple(GEOMETRY.origin_xyz))
    image.SetSpacing(tuple(GEOMETRY.spacing_xyz))
    image.SetDirection(tuple(GEOMETRY.direction.ravel()))
    ct_path = tmp_path / "case7.nii.gz"
    sitk.WriteImage(image, str(ct_path))
    written = segment_ct_file(ct_path, tmp_path / "out", _network(), batch_size=8, threshold=0.3)
    assert written["probability"].name == "case7_prob.nii.gz" and written["mask"].name == "case7_mask.nii.gz"
    mask = read_ct(written["mask"])
    assert mask.geometry == GEOMETRY and mask.hu.shape == hu.shape and set(np.unique(mask.hu)) <= {0, 1}
    prob = sitk.ReadImage(str(written["probability"]))
    assert prob.GetPixelID() == sitk.sitkFloat32
    assert Geometry(prob.GetOrigin(), prob.GetSpacing(), prob.GetDirection()) == GEOMETRY
    assert np.array_equal(sitk.GetArrayFromImage(prob) >= 0.3, mask.hu.astype(bool))
    again = write_like(np.ones((2, 3, 4), dtype=np.uint8), GEOMETRY, tmp_path / "x.mhd")
    assert read_ct(again).geometry == GEOMETRY and not list(tmp_path.glob(".*tmp"))
