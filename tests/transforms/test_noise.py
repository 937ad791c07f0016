import numpy as np
import pytest
import torch

from lungmonai.transforms import RandGaussianNoiseTorchd


def _crop() -> np.ndarray:
    return np.zeros((1, 16, 24, 24), dtype=np.float32)


def test_noise_has_the_requested_mean_and_std():
    t = RandGaussianNoiseTorchd("image", prob=1.0, mean=0.1, std=0.025)
    t.set_random_state(seed=0)
    noise = t({"image": _crop()})["image"]
    assert isinstance(noise, np.ndarray) and noise.dtype == np.float32
    assert noise.mean() == pytest.approx(0.1, abs=0.001)
    assert noise.std() == pytest.approx(0.025, rel=0.02)


def test_seeded_transforms_agree_and_successive_draws_differ():
    a, b = RandGaussianNoiseTorchd("image", prob=1.0, std=1.0), RandGaussianNoiseTorchd("image", prob=1.0, std=1.0)
    a.set_random_state(seed=3)
    b.set_random_state(seed=3)
    first = a({"image": _crop()})["image"]
    np.testing.assert_array_equal(first, b({"image": _crop()})["image"])
    assert not np.allclose(first, a({"image": _crop()})["image"])


def test_tensor_in_tensor_out_and_probability_zero_is_identity():
    image = torch.ones(1, 4, 4, 4)
    out = RandGaussianNoiseTorchd("image", prob=1.0, std=0.5)({"image": image})["image"]
    assert isinstance(out, torch.Tensor) and not torch.equal(out, image)
    assert RandGaussianNoiseTorchd("image", prob=0.0, std=0.5)({"image": image})["image"] is image


def test_negative_std_is_refused():
    with pytest.raises(ValueError, match="std"):
        RandGaussianNoiseTorchd("image", std=-1.0)
