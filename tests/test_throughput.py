"""The throughput callback on a CUDA device: CUDA events read a window late, never a
synchronize. Run on the CPU with stand-in events that complete one logging step after they are
recorded (a GPU a little behind its host), counting every synchronize."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from attnlab.callbacks.throughput import EventWindows, Throughput

LOG_EVERY, TOKENS, SECONDS_PER_STEP = 4, 64, 0.5


class Clock:
    now = 0.0


class LateEvent:
    """A CUDA event stand-in: it passes (query() True) once a later event is recorded."""

    recorded: list[LateEvent] = []

    def __init__(self, enable_timing: bool = False) -> None:
        self.t = None

    def record(self) -> None:
        self.t = Clock.now
        LateEvent.recorded.append(self)

    def query(self) -> bool:
        return LateEvent.recorded[-1] is not self

    def elapsed_time(self, end: LateEvent) -> float:
        assert self.query() and end.query(), "read before the GPU passed it: that waits"
        return (end.t - self.t) * 1e3


def test_cuda_windows_are_read_a_window_late_without_synchronize(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    syncs = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: syncs.append(1))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Event", LateEvent)
    logged: list[tuple[int, dict]] = []
    callback = Throughput(peak_flops=1e9, log_every_n_steps=LOG_EVERY)
    task = SimpleNamespace(
        count_tokens=lambda batch: torch.tensor(TOKENS),  # a device count, read late
        flops_per_token=lambda network, seq_len: 10,
    )
    step = SimpleNamespace(i=0)
    module = SimpleNamespace(
        network=None, task=task, log_dict=lambda m, **kw: logged.append((step.i, m))
    )
    device = SimpleNamespace(type="cuda")
    trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(root_device=device))
    batch = {"input_ids": torch.zeros(2, 32, dtype=torch.long)}
    callback.setup(trainer, module, "fit")
    callback.on_train_epoch_start(trainer, module)
    for i in range(4 * LOG_EVERY):
        step.i = i
        Clock.now += SECONDS_PER_STEP
        callback.on_train_batch_end(trainer, module, None, batch, i)
    assert not syncs
    # Logging steps 3, 7, 11, 15: the first window closes at step 3 and is read at step 7.
    assert [i for i, _ in logged] == [7, 11, 15]
    first = logged[0][1]
    # Window 1 ran batches 1..3 (batch 0 starts the clock): 3 x 64 tokens in 1.5 s, 2 ranks.
    assert first["train/tokens_per_sec"] == pytest.approx(3 * TOKENS * 2 / 1.5)
    assert first["train/mfu"] == pytest.approx(3 * TOKENS * 10 / 1.5 / 1e9)
    later = logged[1][1]  # whole windows of LOG_EVERY batches from then on
    assert later["train/tokens_per_sec"] == pytest.approx(TOKENS * 2 / SECONDS_PER_STEP)


def test_a_window_the_gpu_has_not_passed_is_reported_later_not_waited_for() -> None:
    windows = EventWindows(event=LateEvent)
    windows.start()
    Clock.now += 1.0
    windows.mark(torch.tensor(10), 0.0)
    assert windows.ready() == []  # the newest event is not passed yet: nothing read
    Clock.now += 1.0
    windows.mark(torch.tensor(20), 0.0)
    assert windows.ready() == [(pytest.approx(1.0), 10.0, 0.0)]
