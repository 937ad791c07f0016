"""ResumableCheckpoint: a killed SupervisedTrainer run continues where it stopped."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.handlers import LrScheduleHandler
from torch.utils.data import DataLoader

from lungmonai.handlers import SamplesSeen
from lungmonai.handlers.checkpoint import ResumableCheckpoint, atomic_torch_save
from lungmonai.optim import make_scheduler
from tests.helpers import CodePayload

N_ITEMS, BATCH = 12, 4
STEPS = N_ITEMS // BATCH


def _items():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_ITEMS, 3, generator=g)
    return [{"image": x[i], "label": torch.tensor(int(x[i, 0] > 0))} for i in range(N_ITEMS)]


def _trainer(path, max_epochs, resume, seed, batch=BATCH, schedule=None):
    torch.manual_seed(seed)  # a different seed per run: a resumed run must not depend on it
    network = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    if schedule is None:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    else:  # per iteration, as the bundles plan it: epochs x batches
        scheduler = make_scheduler(schedule, optimizer, total_steps=max_epochs * STEPS, warmup_steps=STEPS)
    seen = SamplesSeen()
    checkpoint = ResumableCheckpoint(
        path, {"network": network, "optimizer": optimizer, "lr_scheduler": scheduler, "samples_seen": seen},
        resume=resume,
    )
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=DataLoader(_items(), batch_size=batch, shuffle=False),
        network=network,
        optimizer=optimizer,
        loss_function=torch.nn.CrossEntropyLoss(),
        train_handlers=[LrScheduleHandler(scheduler, epoch_level=False, print_lr=False), seen, checkpoint],
        decollate=False,
    )
    return trainer, network, optimizer, scheduler, seen


def _tmp_files(directory):
    return [p.name for p in directory.iterdir() if p.name != "last.pt"]


def test_resume_continues_at_next_epoch_with_all_state(tmp_path):
    path = tmp_path / "models" / "last.pt"
    first, net1, opt1, sched1, seen1 = _trainer(path, max_epochs=2, resume=False, seed=0)
    first.run()
    assert path.is_file() and _tmp_files(path.parent) == []
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert set(saved) == {"network", "optimizer", "lr_scheduler", "samples_seen", "trainer"}
    assert saved["samples_seen"]["count"] == 2 * N_ITEMS and saved["samples_seen"]["seconds"] > 0
    assert saved["trainer"]["iteration"] == 2 * STEPS
    net_saved = {k: v.clone() for k, v in net1.state_dict().items()}

    second, net2, opt2, sched2, seen2 = _trainer(path, max_epochs=3, resume=True, seed=1)
    at_start, epochs = {}, []

    @second.on(Events.STARTED)  # registered after the checkpoint's own STARTED handler
    def snapshot(engine):
        at_start["epoch"] = engine.state.epoch
        at_start["iteration"] = engine.state.iteration
        at_start["weights"] = {k: v.clone() for k, v in net2.state_dict().items()}
        at_start["momentum"] = [opt2.state[p]["momentum_buffer"].clone() for p in net2.parameters()]
        at_start["lr"] = opt2.param_groups[0]["lr"]
        at_start["sched_last_epoch"] = sched2.last_epoch
        at_start["seen"] = seen2.count

    second.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    second.run()

    assert at_start["epoch"] == 2 and at_start["iteration"] == 2 * STEPS
    for key, value in net_saved.items():
        assert torch.equal(at_start["weights"][key], value), key
    for got, want in zip(at_start["momentum"], [opt1.state[p]["momentum_buffer"] for p in net1.parameters()]):
        assert torch.equal(got, want)
    assert at_start["sched_last_epoch"] == sched1.last_epoch == 2 * STEPS
    assert at_start["lr"] == pytest.approx(opt1.param_groups[0]["lr"])
    assert at_start["seen"] == 2 * N_ITEMS

    assert epochs == [3]  # only the missing epoch ran
    assert second.state.epoch == 3 and second.state.iteration == 3 * STEPS
    assert seen2.count == 3 * N_ITEMS
    assert sched2.last_epoch == 3 * STEPS
    assert not torch.equal(net2.weight, net_saved["weight"])  # it did train on
    resaved = torch.load(path, map_location="cpu", weights_only=True)
    assert resaved["trainer"]["iteration"] == 3 * STEPS and resaved["samples_seen"]["count"] == 3 * N_ITEMS
    assert resaved["samples_seen"]["seconds"] > saved["samples_seen"]["seconds"]  # the clock resumed too
    assert _tmp_files(path.parent) == []


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    straight, net_a, *_ = _trainer(tmp_path / "a" / "last.pt", max_epochs=3, resume=False, seed=0)
    straight.run()
    first, *_ = _trainer(tmp_path / "b" / "last.pt", max_epochs=2, resume=False, seed=0)
    first.run()
    second, net_b, *_ = _trainer(tmp_path / "b" / "last.pt", max_epochs=3, resume=True, seed=5)
    second.run()
    for key, value in net_a.state_dict().items():
        torch.testing.assert_close(net_b.state_dict()[key], value)


def test_resume_without_file_warns_and_starts_fresh(tmp_path, caplog):
    path = tmp_path / "last.pt"
    trainer, net, *_ , seen = _trainer(path, max_epochs=1, resume=True, seed=0)
    epochs = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    with caplog.at_level(logging.WARNING, logger="lungmonai.handlers.checkpoint"):
        trainer.run()
    assert any("does not exist" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert epochs == [1] and seen.count == N_ITEMS
    assert path.is_file()


def test_resume_false_ignores_an_existing_file(tmp_path):
    path = tmp_path / "last.pt"
    _trainer(path, max_epochs=2, resume=False, seed=0)[0].run()
    trainer, *_ , seen = _trainer(path, max_epochs=1, resume=False, seed=0)
    trainer.run()
    assert trainer.state.epoch == 1 and seen.count == N_ITEMS
    assert torch.load(path, weights_only=True)["trainer"]["iteration"] == STEPS  # overwritten


def test_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"network": {}}, path)
    trainer, *_ = _trainer(path, max_epochs=1, resume=True, seed=0)
    with pytest.raises(ValueError, match=r"lacks \[.*'optimizer'.*\].*resume false"):
        trainer.run()


def _amp(trainer, monkeypatch, init_scale):
    """AMP as SupervisedTrainer runs it on CUDA: its run() makes a GradScaler (here a CPU one)."""
    monkeypatch.setattr(torch.cuda.amp, "GradScaler", lambda: torch.amp.GradScaler("cpu", init_scale=init_scale))
    trainer.amp = True
    return trainer


def test_the_amp_grad_scaler_is_saved_and_restored(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    first = _amp(_trainer(path, max_epochs=1, resume=False, seed=0)[0], monkeypatch, init_scale=512.0)
    first.run()
    saved = torch.load(path, weights_only=True)["grad_scaler"]
    assert saved["scale"] == first.scaler.get_scale()
    second = _amp(_trainer(path, max_epochs=2, resume=True, seed=1)[0], monkeypatch, init_scale=65536.0)
    scales = []
    second.add_event_handler(Events.ITERATION_STARTED, lambda engine: scales.append(engine.scaler.get_scale()))
    second.run()
    assert scales[0] == saved["scale"]  # the first step after the resume uses the saved scale


def test_a_checkpoint_without_grad_scaler_resumes_with_amp(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    _trainer(path, max_epochs=1, resume=False, seed=0)[0].run()  # no AMP: no scaler saved
    resumed = _amp(_trainer(path, max_epochs=2, resume=True, seed=1)[0], monkeypatch, init_scale=256.0)
    resumed.run()
    assert resumed.state.epoch == 2 and resumed.scaler.get_scale() == 256.0


def test_save_replaces_atomically(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_torch_save({"v": 1}, path)
    assert torch.load(path)["v"] == 1
    atomic_torch_save({"v": 2}, path)
    assert torch.load(path)["v"] == 2 and _tmp_files(tmp_path) == []

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"v": 3}, path)
    monkeypatch.undo()
    assert torch.load(path)["v"] == 2  # the previous checkpoint is intact
    assert _tmp_files(tmp_path) == []  # and no temp file is left behind


def test_resume_with_another_batch_size_runs_the_new_loaders_epochs(tmp_path):
    path = tmp_path / "last.pt"
    _trainer(path, max_epochs=2, resume=False, seed=0)[0].run()  # 3 batches of 4 per epoch
    trainer, *_, seen = _trainer(path, max_epochs=3, resume=True, seed=0, batch=6)  # 2 batches of 6
    iterations = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: iterations.append(e.state.iteration))
    trainer.run()
    assert trainer.state.epoch_length == 2 and iterations == [5, 6]
    assert seen.count == 2 * N_ITEMS + N_ITEMS  # two epochs of the old run, one of the new


@pytest.mark.parametrize("schedule", ["warmup_cosine", "onecycle"])
def test_resume_with_more_epochs_stretches_the_schedule_to_the_new_length(tmp_path, schedule):
    def run(max_epochs, resume):
        trainer, _, optimizer, _, _ = _trainer(tmp_path / "last.pt", max_epochs, resume, seed=0, schedule=schedule)
        lrs = []
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: lrs.append(optimizer.param_groups[0]["lr"]))
        trainer.run()
        return lrs

    first = run(2, resume=False)
    resumed = run(4, resume=True)  # one-cycle: stepping past the first run's 6 steps raised
    assert len(resumed) == 2 * STEPS
    assert resumed[-1] < 0.2 * max(first + resumed)  # annealed towards the new end
    assert all(b <= a + 1e-12 for a, b in zip(resumed, resumed[1:]))  # never climbing back up


def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path):
    from lungmonai.weights import UnsafeCheckpointError

    path, marker = tmp_path / "last.pt", tmp_path / "payload-ran"
    torch.save({"network": CodePayload(marker)}, path)
    trainer, *_ = _trainer(path, max_epochs=1, resume=True, seed=0)
    with pytest.raises(UnsafeCheckpointError, match="last.pt: not a plain checkpoint"):
        trainer.run()
    assert not marker.exists()


def test_only_plain_values_are_saved(tmp_path):
    path = tmp_path / "last.pt"
    with pytest.raises(TypeError, match=r"last.pt\['network'\]\['f'\] is a function"):
        atomic_torch_save({"network": {"f": _items}}, path)
    assert not path.exists() and list(tmp_path.iterdir()) == []
