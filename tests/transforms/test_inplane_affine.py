import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lungmonai.transforms import RandInPlaneAffined
from lungmonai.transforms.inplane_affine import inplane_affine


def _volume(shape=(2, 8, 12, 10), seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _trilinear_reference(x: torch.Tensor, angle: float, scale, offset) -> torch.Tensor:
    """The same map as one 3D trilinear resampling (torch's 3D grid_sample)."""
    _, depth, rows, cols = x.shape
    cos, sin = np.cos(angle), np.sin(angle)
    m = np.array([[scale[0], 0, 0], [0, cos * scale[1], -sin * scale[2]], [0, sin * scale[1], cos * scale[2]]])
    centre = (np.array([depth, rows, cols]) - 1) / 2.0
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in (depth, rows, cols)], indexing="ij"), -1).reshape(-1, 3)
    src = (idx - centre) @ m.T + centre + np.asarray(offset)
    src = np.clip(src, 0, np.array([depth, rows, cols]) - 1)  # border replication
    norm = 2.0 * src / (np.array([depth, rows, cols]) - 1) - 1.0
    grid = torch.tensor(norm[:, ::-1].copy(), dtype=torch.float32).reshape(1, depth, rows, cols, 3)
    return F.grid_sample(x[None], grid, mode="bilinear", align_corners=True)[0]


@pytest.mark.parametrize(
    ("angle", "scale", "offset"),
    [(0.7, (1.1, 0.9, 1.2), (1.3, -2.2, 0.4)), (-2.5, (0.8, 1.15, 1.0), (0.0, 0.5, -1.5)), (3.1, (1.0, 1.0, 1.0), (-0.4, 0.0, 0.0))],
)
def test_separable_sampling_equals_trilinear_resampling(angle, scale, offset):
    x = _volume()
    ours = inplane_affine(x, angle, scale, offset)
    ref = _trilinear_reference(x, angle, scale, offset)
    assert torch.allclose(ours, ref, atol=1e-4)


def test_quarter_turn_is_a_rot90_of_every_slice():
    x = _volume((1, 4, 9, 9))
    out = inplane_affine(x, np.pi / 2, (1, 1, 1), (0, 0, 0))
    assert torch.allclose(out, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-5)
    # The slice axis is untouched by an in-plane rotation.
    assert torch.allclose(out.sum(dim=(2, 3)), x.sum(dim=(2, 3)), atol=1e-3)


def test_integer_offset_shifts_with_border_replication():
    x = _volume((1, 6, 5, 5))
    out = inplane_affine(x, 0.0, (1, 1, 1), (2, 0, -1))
    expected = x[:, [2, 3, 4, 5, 5, 5]][:, :, :, [0, 0, 1, 2, 3]]
    assert torch.allclose(out, expected, atol=1e-5)


def test_rejects_a_volume_without_channel_axis():
    with pytest.raises(ValueError, match="channel-first"):
        inplane_affine(torch.zeros(8, 12, 10), 0.1, (1, 1, 1), (0, 0, 0))


def test_dictionary_transform_keeps_type_and_is_reproducible_with_a_seed():
    image = _volume().numpy()
    make = lambda: RandInPlaneAffined("image", prob=1.0, rotate_range=np.pi, scale_range=(0.2,) * 3, translate_range=(1, 2, 2))  # noqa: E731
    a, b = make(), make()
    a.set_random_state(seed=5)
    b.set_random_state(seed=5)
    out_a, out_b = a({"image": image})["image"], b({"image": image})["image"]
    assert isinstance(out_a, np.ndarray) and out_a.dtype == np.float32 and out_a.shape == image.shape
    np.testing.assert_array_equal(out_a, out_b)
    assert not np.allclose(out_a, image)
    # A second draw from the same transform is a different augmentation.
    assert not np.allclose(a({"image": image})["image"], out_a)


def test_probability_zero_and_zero_ranges_leave_the_crop_untouched():
    image = _volume()
    for t in (RandInPlaneAffined("image", prob=0.0, rotate_range=np.pi), RandInPlaneAffined("image", prob=1.0)):
        assert t({"image": image})["image"] is image
