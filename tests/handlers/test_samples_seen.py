"""Samples seen and training seconds: both survive a resume, and a pause between runs is not training."""

from __future__ import annotations

import time

import torch
from ignite.engine import Engine

from lungmonai.handlers import SamplesSeen

STEP_S = 0.02


def _engine(seen: SamplesSeen) -> Engine:
    def step(_: Engine, batch: dict) -> None:
        time.sleep(STEP_S)

    engine = Engine(step)
    seen.attach(engine)
    return engine


def _batches(n: int) -> list[dict]:
    return [{"label": torch.zeros(4)} for _ in range(n)]


def test_a_resumed_training_adds_its_seconds_and_samples_but_not_the_pause() -> None:
    first = SamplesSeen()
    _engine(first).run(_batches(5), max_epochs=1)
    assert first.count == 20
    assert 5 * STEP_S <= first.seconds < 5 * STEP_S + 0.5

    saved = first.state_dict()
    time.sleep(0.3)  # killed, then resumed later: this pause is not training
    resumed = SamplesSeen()
    resumed.load_state_dict(saved)
    _engine(resumed).run(_batches(5), max_epochs=1)
    assert resumed.count == 40
    assert 10 * STEP_S <= resumed.seconds < 10 * STEP_S + 0.25, "the pause between runs was counted, or a run lost"


def test_a_checkpoint_from_before_the_clock_resumes_its_count() -> None:
    seen = SamplesSeen()
    seen.load_state_dict({"count": 128})
    assert seen.count == 128 and seen.seconds == 0.0
