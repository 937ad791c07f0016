"""Is segmentation training compute-bound? Samples/s through the bundle's real data path
(group-share sampler, cached seven-slice windows and labels, HU scaling in the loader; flips,
rotation/scale, 64x64 crop and noise on the batch, as the trainer's ``prepare_batch`` does)
against the same training step on random 64x64 tensors.

    python bench/bench_seg_training.py --dataset_dir data/luna16_synth [--steps 40] [--num_workers 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cls_training import training_parser, training_step  # noqa: E402


def _timed_steps(network, optimizer, loss_fn, inferer, batches, steps: int) -> tuple[list[float], list[float]]:
    """Per-step wall time (fetch + step) and the part spent waiting for the batch."""
    for _ in range(3):  # warm-up: allocator, oneDNN kernels, worker start-up
        images, labels = next(batches)
        training_step(network, optimizer, loss_fn, inferer, images, labels)
    total, waits = [], []
    for _ in range(steps):
        start = time.perf_counter()
        images, labels = next(batches)
        waited = time.perf_counter() - start
        training_step(network, optimizer, loss_fn, inferer, images, labels)
        total.append(time.perf_counter() - start)
        waits.append(waited)
    return total, waits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset_dir", default="data/luna16_synth")
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--num_workers", type=int, default=1)
    ap.add_argument("--torch_threads", type=int, default=0, help="the bundle's torch_threads (0: torch's default)")
    args = ap.parse_args()
    parser = training_parser("nodule_seg", args.dataset_dir, args.batch_size, args.num_workers)
    parser["torch_threads"] = args.torch_threads
    parser.get_parsed_content("initialize")  # what the bundle's run does first (seeding, threads)
    network, optimizer, loss_fn, inferer = (
        parser.get_parsed_content(k) for k in ("network", "optimizer", "loss", "train#inferer")
    )
    network.train()
    channels, crop = parser.get_parsed_content("in_channels"), parser.get_parsed_content("crop")

    def random_batches():
        images = torch.randn(args.batch_size, channels, crop, crop)
        labels = (torch.rand(args.batch_size, 1, crop, crop) > 0.95).float()
        while True:
            yield images, labels

    prepare_batch = parser.get_parsed_content("train#trainer#prepare_batch")

    def loader_batches():
        for batch in parser.get_parsed_content("train#dataloader"):
            yield prepare_batch(batch, torch.device("cpu"))

    alone, _ = _timed_steps(network, optimizer, loss_fn, inferer, random_batches(), args.steps)
    full, waits = _timed_steps(network, optimizer, loss_fn, inferer, loader_batches(), args.steps)
    alone_rate = args.batch_size / statistics.median(alone)
    full_rate = args.batch_size / statistics.median(full)
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size} x {channels}x{crop}x{crop}, "
          f"num_workers {args.num_workers}, {args.steps} steps")
    print(f"model alone (random tensors):   {alone_rate:8.1f} samples/s (median step {statistics.median(alone)*1e3:.0f} ms)")
    print(f"full data path (bundle loader): {full_rate:8.1f} samples/s (median wait for a batch {statistics.median(waits)*1e3:.1f} ms)")
    print(f"ratio full / alone:             {full_rate / alone_rate:8.3f}")


if __name__ == "__main__":
    main()
