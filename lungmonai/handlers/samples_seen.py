"""Training samples seen so far: the x axis of every curve, and part of the resumable state.

Epochs of a class-balanced sampler have an arbitrary length, so curves are plotted against the
number of samples trained on (as in the LUNA book), which stays comparable across runs with
different epoch sizes, batch sizes or process counts.
"""

from __future__ import annotations

from ignite.engine import Engine, Events


class SamplesSeen:
    """Counts samples over all processes; checkpoint it (``state_dict``) to resume the count."""

    def __init__(self, batch_key: str = "label", world_size: int = 1) -> None:
        self.count = 0
        self.batch_key = batch_key
        self.world_size = world_size

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._add)

    def _add(self, engine: Engine) -> None:
        batch = engine.state.batch
        n = len(batch[self.batch_key]) if isinstance(batch, dict) else len(batch[0])
        self.count += n * self.world_size

    def __call__(self, *_: object) -> int:
        """Usable directly as a ``global_epoch_transform``: ignores the epoch, returns the count."""
        return self.count

    def state_dict(self) -> dict[str, int]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.count = int(state["count"])
