"""The package as a user installs it: a wheel in a fresh virtual environment, run from a
directory outside the source tree, finds the bundles that ship inside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import write_luna_dataset

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from this checkout. Its dependencies (torch, MONAI,
    ...) come from the test's own environment through a path file, so the test needs no
    network and no minutes of installing; lungmonai itself comes only from the wheel."""
    root = tmp_path_factory.mktemp("installed")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"), str(REPO)], root)
    wheel = next((root / "dist").glob("lungmonai-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "lungmonai/bundles/contract.json" in names and "lungmonai/bundles/nodule_cls/configs/train.json" in names
    _run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], root)
    python = root / "venv/bin/python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).stdout.strip())
    # A path (not a site dir): the outer environment's editable install of lungmonai is not loaded.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], root)
    return root / "venv"


def test_the_installed_package_analyzes_a_ct_from_another_directory(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin/python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LUNGMONAI_BUNDLES")} | {
        "LUNGMONAI_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    where = _run([str(python), "-c", "import lungmonai, lungmonai.config as c; print(lungmonai.__file__); print(c.find_bundles())"],
                 tmp_path, env).stdout.split()
    assert all(Path(p).is_relative_to(installed) for p in where), where
    # No weights ship yet: the test stores untrained networks of the contract's architectures,
    # which is all that finding, loading and running the bundles needs.
    _run([str(python), "-c", (
        "import torch; from lungmonai.config import contract, find_bundles, network\n"
        "b = find_bundles()\n"
        "for name, net in (('nodule_seg', 'segmenter'), ('nodule_cls', 'classifier')):\n"
        "    torch.manual_seed(0); (b / name / 'models').mkdir(exist_ok=True)\n"
        "    torch.save(network(contract(b), net).state_dict(), b / name / 'models/model.pt')\n")], tmp_path, env)
    ct = next(iter(write_luna_dataset(tmp_path / "data", n_series=1).series.values()))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    result = _run([str(installed / "bin/lungmonai"), "analyze", str(ct), "--out", "reports", "--max_components", "20"],
                  elsewhere, env)

    report = json.loads((elsewhere / "reports" / f"{ct.stem}_report.json").read_text())
    assert report["source"] == str(ct) and report["candidates"] > 0, result.stdout
    assert report["settings"]["max_components"] == 20  # the flag over the installed contract's settings
    assert (elsewhere / "reports" / f"{ct.stem}_submission.csv").is_file()
