"""Where the bundles and their contract are found, and that one contract drives every config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from lungmonai.config import contract, find_bundles, network

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("nodule_cls", "nodule_seg", "nodule_malignancy", "nodule_pipeline")


def _copy(root: Path) -> Path:
    for name in BUNDLES:
        shutil.copytree(REPO / "bundles" / name / "configs", root / name / "configs")
    shutil.copy(REPO / "bundles/contract.json", root / "contract.json")
    return root


def test_bundles_come_from_the_argument_then_the_environment_then_the_package(tmp_path: Path, monkeypatch) -> None:
    copy, other = _copy(tmp_path / "mine"), _copy(tmp_path / "theirs")
    monkeypatch.delenv("LUNGMONAI_BUNDLES", raising=False)
    assert find_bundles() == (REPO / "bundles").resolve()  # installed with the package
    monkeypatch.setenv("LUNGMONAI_BUNDLES", str(other))
    assert find_bundles() == other.resolve()
    assert find_bundles(copy) == copy.resolve()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nowhere'} \\(from --bundles\\): not a bundles folder"):
        find_bundles(tmp_path / "nowhere")


def _parsed(bundles: Path, bundle: str, configs: tuple[str, ...], key: str):
    parser = ConfigParser()
    parser.read_config([str(bundles / bundle / "configs" / c) for c in configs])
    parser["bundles_dir"] = str(bundles)
    return parser.get_parsed_content(key)


@pytest.mark.parametrize("bundle, network_name, configs", [
    ("nodule_seg", "segmenter", (("train.json",), ("train.json", "evaluate.json"), ("inference.json",))),
    ("nodule_cls", "classifier", (("train.json",), ("train.json", "evaluate.json"), ("inference.json",))),
    ("nodule_malignancy", "classifier", (("train.json",), ("inference.json",))),
])
def test_a_network_changed_in_the_contract_changes_in_every_config(tmp_path: Path, bundle: str, network_name: str,
                                                                   configs: tuple[tuple[str, ...], ...]) -> None:
    bundles = _copy(tmp_path / "bundles_copy")
    settings = json.loads((bundles / "contract.json").read_text())
    if network_name == "segmenter":
        settings["networks"]["segmenter"]["channels"] = [8, 16, 32]
        expected = (8, 16, 32)
    else:
        settings["crop_shape"] = [16, 32, 32]
        expected = (16, 32, 32)
    (bundles / "contract.json").write_text(json.dumps(settings))

    for files in configs:
        net = _parsed(bundles, bundle, files, "network_def")
        if network_name == "segmenter":
            assert tuple(net.channels) == expected, files
        else:
            # LunaModel's head sees 64 channels x (crop / 16) voxels: 64 * 1 * 2 * 2 for 16x32x32
            assert net.head.in_features == 256 and tuple(_parsed(bundles, bundle, files, "crop_shape")) == expected, files
    assert type(network(contract(bundles), network_name)) is type(net)


def test_no_config_names_a_path_inside_the_repository() -> None:
    for path in (REPO / "bundles").glob("*/configs/*.json"):
        text = path.read_text()
        assert "%bundles/" not in text and '"bundles/' not in text and "os.chdir" not in text, path


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_verifies_offline_against_the_bundles_schema(bundle: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    def verify(meta: Path) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(meta),
               "--filepath", str(REPO / "bundles/metadata_schema.json")]
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    meta = REPO / "bundles" / bundle / "configs/metadata.json"
    result = verify(meta)
    assert result.returncode == 0 and "verified with no error" in result.stdout + result.stderr, result.stderr[-2000:]
    broken = json.loads(meta.read_text())
    del broken["network_data_format"]["inputs"]
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    assert verify(tmp_path / "metadata.json").returncode != 0


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_records_the_contract_working_grid(bundle: str) -> None:
    meta = json.loads((REPO / "bundles" / bundle / "configs/metadata.json").read_text())
    assert meta["grid_spacing_xyz"] == contract(REPO / "bundles")["grid_spacing_xyz"]
