"""Process pools fork only where forking cannot deadlock."""

from __future__ import annotations

import sys
import threading

import pytest

from lungmonai.parallel import _os_threads, process_context


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is used on Linux only")
def test_a_process_running_other_threads_spawns_its_workers() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert _os_threads() >= 2
        assert process_context().get_start_method() == "spawn"
    finally:
        stop.set()
        thread.join()


def test_a_cache_build_after_torch_ran_threads_finishes(tmp_path) -> None:
    """The hang this guards against: torch's OpenMP threads, then a forked pool calling torch."""
    import subprocess

    code = (
        "import torch, numpy as np\n"
        "torch.set_num_threads(2); torch.ones(256, 256) @ torch.ones(256, 256)\n"
        "from lungmonai.parallel import process_context\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from lungmonai.io.grid import resample_axes\n"
        "with ProcessPoolExecutor(2, mp_context=process_context()) as pool:\n"
        "    out = [f.result(timeout=120) for f in [pool.submit(resample_axes, np.ones((8, 64, 64), np.float32), (0.5, 0.5, 0.5), (16, 128, 128)) for _ in range(2)]]\n"
        "print(process_context().get_start_method(), out[0].shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(16, 128, 128)" in done.stdout
