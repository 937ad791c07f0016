"""The weights the bundles ship: each loads into its inference network, matches the hash its
metadata records, and was trained on the generator version the dataset code now writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from lungmonai.recipe_record import WEIGHTS, check_shipped
from lungmonai.weights import load_weights

REPO = Path(__file__).resolve().parents[2]
TRAINED = ("nodule_cls", "nodule_seg", "nodule_malignancy")


def _shipped(bundle: str) -> bool:
    metadata = json.loads((REPO / "bundles" / bundle / "configs/metadata.json").read_text())
    return "training" in metadata


@pytest.mark.parametrize("bundle", TRAINED)
def test_shipped_weights_load_into_the_inference_network_and_match_their_record(bundle: str) -> None:
    if not _shipped(bundle):
        pytest.skip(f"{bundle} ships no trained weights yet (no training record in its metadata)")
    assert check_shipped(REPO / "bundles", bundle) == []
    weights = REPO / "bundles" / bundle / WEIGHTS
    assert weights.stat().st_size <= 10 * 2**20, f"{weights} is over 10 MB"
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "configs/inference.json"))
    parser["bundles_dir"] = str(REPO / "bundles")
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(load_weights(weights))  # strict: every key, every shape
    assert all(torch.isfinite(p).all() for p in network.parameters())
