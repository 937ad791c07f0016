"""Is segmentation training compute-bound? Samples/s through the bundle's real data path
(group-share sampler, cached seven-slice windows and labels, HU scaling in the loader; flips,
rotation/scale, 64x64 crop and noise on the batch, as the trainer's ``prepare_batch`` does)
against the same training step on random 64x64 tensors.

    python bench/bench_seg_training.py --dataset_dir data/luna16_synth [--steps 40] [--num_workers 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cls_training import print_ratio, timed_steps, training_parser  # noqa: E402


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

    alone, _ = timed_steps(network, optimizer, loss_fn, inferer, random_batches(), args.steps)
    full, waits = timed_steps(network, optimizer, loss_fn, inferer, loader_batches(), args.steps)
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size} x {channels}x{crop}x{crop}, "
          f"num_workers {args.num_workers}, {args.steps} steps")
    print_ratio(alone, full, waits, args.batch_size)


if __name__ == "__main__":
    main()
