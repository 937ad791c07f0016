"""Is nodule-classifier training compute-bound? Samples/s through the bundle's real data path
(cache reads, HU scaling, flips, in-plane affine, noise, collation, balanced sampler) against the same
training step on random tensors of the same shape, plus validation samples/s.

    python bench/bench_cls_training.py --dataset_dir data/luna16_synth [--steps 30] [--num_workers 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
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


def _rate(times: list[float], batch_size: int) -> float:
    return batch_size / statistics.median(times)


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

    images = torch.randn(args.batch_size, 1, 32, 48, 48)
    labels = torch.randint(0, 2, (args.batch_size,))
    for _ in range(3):
        training_step(network, optimizer, loss_fn, inferer, images, labels)
    alone = []
    for _ in range(args.steps):
        start = time.perf_counter()
        training_step(network, optimizer, loss_fn, inferer, images, labels)
        alone.append(time.perf_counter() - start)

    loader = iter(parser.get_parsed_content("train#dataloader"))
    for _ in range(3):
        batch = next(loader)
        training_step(network, optimizer, loss_fn, inferer, batch["image"], batch["label"])
    full, waits = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        batch = next(loader)
        waited = time.perf_counter() - start
        training_step(network, optimizer, loss_fn, inferer, batch["image"], batch["label"])
        full.append(time.perf_counter() - start)
        waits.append(waited)

    val_loader = parser.get_parsed_content("validate#dataloader")
    network.eval()
    count, start = 0, time.perf_counter()
    with torch.no_grad():
        for batch in val_loader:
            network(batch["image"])
            count += len(batch["image"])
    val_rate = count / (time.perf_counter() - start)

    alone_rate, full_rate = _rate(alone, args.batch_size), _rate(full, args.batch_size)
    dtype = autocast_dtype(args.precision, "cpu")
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, num_workers {args.num_workers}, "
          f"{args.steps} steps, training step in {dtype or torch.float32}")
    print(f"model alone (random tensors):   {alone_rate:8.1f} samples/s (median step {statistics.median(alone)*1e3:.0f} ms)")
    print(f"full data path (bundle loader): {full_rate:8.1f} samples/s (median wait for a batch {statistics.median(waits)*1e3:.1f} ms)")
    print(f"ratio full / alone:             {full_rate / alone_rate:8.3f}")
    print(f"validation (no augmentation):   {val_rate:8.1f} samples/s over {count} candidates")


if __name__ == "__main__":
    main()
