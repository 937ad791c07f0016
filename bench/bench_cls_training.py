"""Is nodule-classifier training compute-bound? Samples/s through the bundle's real data path
(cache reads, HU scaling, flips, in-plane affine, noise, collation, balanced sampler) against the same
training step on random tensors of the same shape, plus validation samples/s.

    python bench/bench_cls_training.py --dataset_dir data/luna16_synth [--steps 30] [--num_workers 1]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from lungmonai.inference.autocast import autocast_dtype

REPO = Path(__file__).resolve().parents[1]


def training_parser(bundle: str, dataset_dir: str, batch_size: int, num_workers: int) -> ConfigParser:
    """A bundle's train.json on the CPU with an epoch long enough never to end mid-benchmark."""
    parser = ConfigParser()
    parser.read_config(REPO / f"bundles/{bundle}/configs/train.json")
    parser.update({"dataset_dir": dataset_dir, "batch_size": batch_size, "num_workers": num_workers,
                   "epoch_samples": 1_000_000, "device": "$torch.device('cpu')", "bundle_root": f"/tmp/bench_{bundle}"})
    return parser


def training_step(network: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn, inferer, images, labels) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss_fn(inferer(images, network), labels).backward()
    optimizer.step()


def timed_steps(network, optimizer, loss_fn, inferer, batches: Iterator, steps: int) -> tuple[list[float], list[float]]:
    """Per-step wall time (fetch + step) over ``steps`` (images, labels) pairs from ``batches``,
    after three warm-up steps (allocator, oneDNN kernels, worker start-up), and the part of each
    spent waiting for the batch."""
    for _ in range(3):
        training_step(network, optimizer, loss_fn, inferer, *next(batches))
    total, waits = [], []
    for _ in range(steps):
        start = time.perf_counter()
        images, labels = next(batches)
        waited = time.perf_counter() - start
        training_step(network, optimizer, loss_fn, inferer, images, labels)
        total.append(time.perf_counter() - start)
        waits.append(waited)
    return total, waits


def print_ratio(alone: list[float], full: list[float], waits: list[float], batch_size: int) -> None:
    """The model alone against the full data path: samples/s from median steps, and their ratio."""
    alone_rate, full_rate = batch_size / statistics.median(alone), batch_size / statistics.median(full)
    print(f"model alone (random tensors):   {alone_rate:8.1f} samples/s (median step {statistics.median(alone)*1e3:.0f} ms)")
    print(f"full data path (bundle loader): {full_rate:8.1f} samples/s (median wait for a batch {statistics.median(waits)*1e3:.1f} ms)")
    print(f"ratio full / alone:             {full_rate / alone_rate:8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset_dir", default="data/luna16_synth")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--num_workers", type=int, default=1)
    ap.add_argument("--precision", default="auto", help="auto | bf16 | fp32 (the training step's autocast)")
    args = ap.parse_args()
    parser = training_parser("nodule_cls", args.dataset_dir, args.batch_size, args.num_workers)
    parser["precision"] = args.precision
    parser.get_parsed_content("initialize")  # what the bundle's run does first (seeding, no MetaTensor tracking)
    network, optimizer, loss_fn, inferer = (
        parser.get_parsed_content(k) for k in ("network", "optimizer", "loss", "train#inferer")
    )
    network.train()

    random = itertools.repeat((torch.randn(args.batch_size, 1, 32, 48, 48), torch.randint(0, 2, (args.batch_size,))))
    alone, _ = timed_steps(network, optimizer, loss_fn, inferer, random, args.steps)
    loader = ((b["image"], b["label"]) for b in parser.get_parsed_content("train#dataloader"))
    full, waits = timed_steps(network, optimizer, loss_fn, inferer, loader, args.steps)

    val_inferer = parser.get_parsed_content("validate#inferer")  # the evaluator's, autocast included
    network.eval()
    count, start = 0, time.perf_counter()
    with torch.no_grad():
        for batch in parser.get_parsed_content("validate#dataloader"):
            val_inferer(batch["image"], network)
            count += len(batch["image"])
    val_rate = count / (time.perf_counter() - start)

    dtype = autocast_dtype(args.precision, "cpu")
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, num_workers {args.num_workers}, "
          f"{args.steps} steps, training step in {dtype or torch.float32}")
    print_ratio(alone, full, waits, args.batch_size)
    print(f"validation (no augmentation):   {val_rate:8.1f} samples/s over {count} candidates")


if __name__ == "__main__":
    main()
