"""ignite handlers of the segmentation bundle: epoch figures, overlay pictures, the eval report.

``SegmentationMetrics`` gathers voxel counts and per-nodule touches over an epoch in one pass
(MONAI's Dice/ConfusionMatrix handlers each reduce per image and know nothing of nodules) and
publishes every figure under a prefix, so StatsHandler and TensorBoardStatsHandler log them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from monai.handlers import from_engine
from torch.utils.tensorboard import SummaryWriter

from lungmonai.cache.atomic import atomic_write_json
from lungmonai.plots import save_figure
from lungmonai.segmentation.metrics import NoduleTouches, voxel_figures
from lungmonai.segmentation.overlay import overlay_figure, overlay_rgb
from lungmonai.segmentation.reach import NoduleReach


def _batch_meta(engine: Engine) -> tuple[list[str], list[int], list[int], list[int]]:
    """Series, slice, and the first row and column of each prediction of a batch of slice items."""
    batch = engine.state.batch

    def ints(key: str) -> list[int]:
        return [int(v) for v in torch.as_tensor(batch[key]).reshape(-1).tolist()]

    return [str(u) for u in batch["series_uid"]], ints("slice"), ints("row"), ints("col")


class SegmentationMetrics(Metric):
    """Voxel Dice/precision/recall/F-beta over the epoch, plus per-nodule recall when ``nodules``
    are given (validation on slices' lung boxes), and per-nodule reach through the pipeline's grouping
    when ``reach`` is given (:class:`lungmonai.segmentation.reach.NoduleReach`; one process).
    The value under the metric's own name is ``key``: ``score``, the mean of nodule reach (or,
    without ``reach``, nodule recall) and voxel F-beta (recall weighted ``beta`` times), or
    F-beta alone without nodules. In distributed runs counts and touches are summed over ranks.
    """

    def __init__(
        self,
        prefix: str = "val",
        threshold: float = 0.5,
        nodules: Sequence[dict[str, Any]] | None = None,
        beta: float = 2.0,
        key: str = "score",
        output_transform: Callable = from_engine(["pred", "label"]),
        device: str | torch.device = "cpu",
        reach: NoduleReach | None = None,
    ) -> None:
        if reach is not None and idist.get_world_size() > 1:
            raise ValueError("nodule reach needs each series' slices in one process; set reach to null in distributed runs")
        if reach is not None and list(reach.nodules) != list(nodules or []):
            raise ValueError("reach must score the same nodules as the metric (the report lists each nodule once)")
        self.prefix = prefix
        self.reach = reach
        self.threshold = float(threshold)
        self.beta = float(beta)
        self.key = key
        self.touches = NoduleTouches(nodules) if nodules else None
        self._logit_threshold = float(np.log(threshold / (1 - threshold))) if 0 < threshold < 1 else None
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._counts = torch.zeros(3, dtype=torch.float64)
        if self.touches is not None:
            self.touches.reset()
        if self.reach is not None:
            self.reach.reset()
        self._meta: tuple[list[str], list[int], list[int], list[int]] | None = None

    def _marked(self, logits: torch.Tensor) -> torch.Tensor:
        if self._logit_threshold is not None:
            return logits.float() >= self._logit_threshold
        return torch.sigmoid(logits.float()) >= self.threshold

    def iteration_completed(self, engine: Engine) -> None:
        self._meta = _batch_meta(engine) if self.touches is not None or self.reach is not None else None
        super().iteration_completed(engine)

    def update(self, output: Sequence[Any]) -> None:
        logits, label = output
        marked = self._marked(torch.as_tensor(logits).detach())
        truth = torch.as_tensor(label).detach() > 0.5
        tp = (marked & truth).sum().item()
        self._counts += torch.tensor([tp, marked.sum().item() - tp, truth.sum().item() - tp], dtype=torch.float64)
        if self.touches is not None and self._meta is not None:
            masks = marked[:, 0].cpu().numpy()
            for uid, index, row0, col0, mask in zip(*self._meta, masks):
                self.touches.update(uid, index, mask, row0, col0)
        if self.reach is not None and self._meta is not None:
            probs = torch.sigmoid(torch.as_tensor(logits).detach()[:, 0].float()).cpu().numpy()
            for uid, index, row0, col0, prob in zip(*self._meta, probs):
                self.reach.update(uid, index, prob, row0, col0)

    def compute(self) -> dict[str, float]:
        counts = self._counts
        if idist.get_world_size() > 1:
            counts = idist.all_reduce(counts.clone())
            if self.touches is not None:
                hits = idist.all_reduce(torch.as_tensor(self.touches.hits, dtype=torch.float64), op="MAX")
                self.touches.hits[:] = hits.numpy() > 0
        figures = voxel_figures(*counts.tolist(), beta=self.beta)
        f_beta = figures[f"f{self.beta:g}"]
        per_nodule = None
        if self.touches is not None:
            figures["nodule_recall"] = per_nodule = self.touches.recall()
            figures["nodules"] = float(len(self.touches.nodules))
            figures["nodules_found"] = float(self.touches.hits.sum())
        if self.reach is not None:
            figures["nodule_reach"] = per_nodule = self.reach.recall()
            figures["nodules_reached"] = float(self.reach.reached.sum())
        figures["score"] = f_beta if per_nodule is None else 0.5 * (per_nodule + f_beta)
        return figures

    def completed(self, engine: Engine, name: str) -> None:
        figures = self.compute()
        for figure, value in figures.items():
            engine.state.metrics[f"{self.prefix}_{figure}"] = value
        engine.state.metrics[name] = figures[self.key]
        outputs = getattr(engine.state, "segmentation_outputs", None) or {}
        nodules = self.touches.details() if self.touches is not None else []
        if self.reach is not None:
            for nodule, reached in zip(nodules, self.reach.reached, strict=True):
                nodule["reached"] = bool(reached)
        outputs[self.prefix] = {"threshold": self.threshold, "nodules": nodules}
        engine.state.segmentation_outputs = outputs


class SegmentationOverlayHandler:
    """Every epoch, the prediction over a fixed set of (series, slice) pairs as overlay images
    (TP green, FN/FP red) to TensorBoard, and optionally a PNG at ``save_path``.

    Collects the chosen slices as the evaluator passes them (slice validation items), so
    nothing is run twice. In distributed runs only the slices this rank saw are drawn.
    """

    def __init__(
        self,
        slices: Sequence[Sequence[Any]],
        summary_writer: SummaryWriter | None = None,
        step: Callable[[Engine], int] | None = None,
        threshold: float = 0.5,
        prefix: str = "val",
        save_path: str | Path | None = None,
        context: int = 3,
    ) -> None:
        self.wanted = [(str(u), int(s)) for u, s in slices]
        self.writer = summary_writer
        self.step = step or (lambda engine: engine.state.epoch)
        self.threshold = float(threshold)
        self.prefix = prefix
        self.save_path = Path(save_path) if save_path else None
        self.context = int(context)
        self._panels: dict[tuple[str, int], np.ndarray] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self._panels.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.draw)

    def collect(self, engine: Engine) -> None:
        wanted = set(self.wanted)
        uids, slices, _, _ = _batch_meta(engine)
        for b, key in enumerate(zip(uids, slices)):
            if key not in wanted:
                continue
            image = engine.state.output["image"][b, self.context].detach().float().cpu().numpy()
            label = engine.state.output["label"][b, 0].detach().cpu().numpy() > 0.5
            prob = torch.sigmoid(engine.state.output["pred"][b, 0].detach().float()).cpu().numpy()
            self._panels[key] = overlay_rgb(image, label, prob >= self.threshold)

    def draw(self, engine: Engine) -> None:
        panels = [(f"{uid[-12:]} slice {s}", self._panels[(uid, s)]) for uid, s in self.wanted if (uid, s) in self._panels]
        if not panels:
            if self.save_path is not None:  # an earlier evaluation's picture must not stand for this one
                Path(self.save_path).unlink(missing_ok=True)
            return
        step = int(self.step(engine))
        if self.writer is not None:
            height = max(p.shape[0] for _, p in panels)
            width = max(p.shape[1] for _, p in panels)
            stacked = np.zeros((len(panels), height, width, 3), dtype=np.float32)
            for k, (_, rgb) in enumerate(panels):  # slices of different series may differ in size
                stacked[k, : rgb.shape[0], : rgb.shape[1]] = rgb
            self.writer.add_images(f"{self.prefix}/overlay", stacked, step, dataformats="NHWC")
            self.writer.flush()
        if self.save_path is not None:
            save_figure(overlay_figure(panels), self.save_path)


class SegmentationReportHandler:
    """At the end of an evaluation, write ``metrics.json`` (figures, settings, every nodule
    found or missed) and ``nodule_recall.png`` (found/missed by diameter) into ``output_dir``."""

    def __init__(
        self,
        output_dir: str | Path,
        prefix: str = "val",
        parts: Sequence[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.prefix = prefix
        # ``prefix`` names the engine's metrics; ``parts`` says which split parts were scored.
        self.parts = list(parts) if parts else [prefix]
        self.extra = dict(extra or {})

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> dict[str, Any]:
        start = f"{self.prefix}_"
        metrics = {k[len(start):]: float(v) for k, v in engine.state.metrics.items() if k.startswith(start)}
        outputs = engine.state.segmentation_outputs[self.prefix]
        report = {
            "part": "+".join(self.parts),
            "parts": self.parts,
            **self.extra,
            "threshold": outputs["threshold"],
            "metrics": metrics,
            "nodules": outputs["nodules"],
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.output_dir / "metrics.json", report)
        save_figure(_recall_by_size_figure(outputs["nodules"], metrics), self.output_dir / "nodule_recall.png")
        return report


def _recall_by_size_figure(nodules: Sequence[dict[str, Any]], metrics: dict[str, float]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    diam = np.array([n["diameter_mm"] for n in nodules], dtype=float)
    found = np.array([n["found"] for n in nodules], dtype=bool)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(diam))
    ax.scatter(diam[found], jitter[found], color="tab:green", label=f"found ({found.sum()})")
    ax.scatter(diam[~found], 1 + jitter[~found], color="tab:red", marker="x", label=f"missed ({(~found).sum()})")
    ax.set_yticks([0, 1], ["found", "missed"])
    ax.set_ylim(-0.5, 1.5)
    ax.set_xlabel("nodule diameter (mm)")
    ax.set_title(
        f"per-nodule recall {metrics.get('nodule_recall', float('nan')):.3f}, voxel Dice {metrics.get('dice', float('nan')):.3f}, "
        f"recall {metrics.get('recall', float('nan')):.3f}"
    )
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    return fig
