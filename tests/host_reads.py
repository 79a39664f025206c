"""Count host reads of tensor values during training steps (what stalls a GPU's pipeline).

A read is anything that needs a tensor's value on the host, or a shape that depends on its
values: `item`/`float`/`int`/`bool` (aten._local_scalar_dense), boolean-mask indexing,
`nonzero`, `unique`, `masked_select`, and `tolist`/`cpu`/`numpy`. Ops are seen through a
TorchDispatchMode, so reads made by Lightning, torchmetrics or the progress bar count as much as
attnlab's own; `tolist`/`cpu`/`numpy` are patched, since on a CPU tensor they do not dispatch.
Reads inside the DataLoader (collating CPU tensors, before the batch moves to the device) are
not counted.
"""

from __future__ import annotations

import traceback
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
# Ops whose result (or its shape) needs the values on the host.
SYNCING_OPS = {
    aten._local_scalar_dense.default: "item/float/int/bool",
    aten.nonzero.default: "nonzero",
    aten.masked_select.default: "masked_select",
    aten._unique2.default: "unique",
    aten.unique_dim.default: "unique",
    aten.unique_consecutive.default: "unique_consecutive",
    aten.equal.default: "equal",
    aten.repeat_interleave.Tensor: "repeat_interleave",
    aten.bincount.default: "bincount",
}
INDEXING_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}
PATCHED = ("tolist", "cpu", "numpy")
# Reads of tensors that stay on the host in a GPU run too: the data pipeline's (collating CPU
# tensors before the transfer), and the step counters of non-capturable torch optimisers
# (kept on the CPU so that reading them costs nothing: torch/optim/optimizer.py).
HOST_FRAMES = (("torch/utils/data/", None), ("torch/optim/optimizer.py", "_get_value"))


def _bool_index(args: tuple[Any, ...]) -> bool:
    indices = args[1] if len(args) > 1 else []
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or []
    )


class HostReads(pl.Callback):
    """Records each host read made while a training batch runs, by global step.

    Reads count from the start of a training epoch until validation or the epoch's end, each
    for the batch the loop has fetched last (Lightning logs a step's metrics and refreshes the
    progress bar after `on_train_batch_end`). Use inside `counting()`.
    """

    def __init__(self) -> None:
        self.reads: dict[int, list[tuple[str, str]]] = defaultdict(list)
        self.steps: list[int] = []
        self.sites: dict[str, int] = defaultdict(int)  # reads by origin, over all windows
        self._trainer: pl.Trainer | None = None  # set while a training batch runs
        self._busy = False

    def record(self, what: str) -> None:
        if self._trainer is None or self._busy:
            return
        self._busy = True
        try:
            stack = traceback.extract_stack()[:-2]
            for frame in stack:
                for part, function in HOST_FRAMES:
                    if part in frame.filename and function in (None, frame.name):
                        return
            frames = [f for f in stack if "host_reads.py" not in f.filename][-25:]
            # The batch the loop works on (hooks of other callbacks may run before ours).
            step = self._trainer.fit_loop.epoch_loop.batch_progress.total.ready - 1
            self.reads[step].append((what, "".join(traceback.format_list(frames))))
            # Where it came from: the innermost frame outside torch itself.
            site = next((f for f in reversed(frames) if "/torch/" not in f.filename), frames[-1])
            where = site.filename.split("site-packages/")[-1].split("/src/")[-1]
            self.sites[f"{what} at {where}:{site.lineno} ({site.name})"] += 1
        finally:
            self._busy = False

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._trainer = trainer  # reads before its first batch count for the batch before

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._trainer = trainer
        self.steps.append(trainer.global_step)

    def _close(self, *args: Any) -> None:
        self._trainer = None

    on_validation_start = on_train_epoch_end = on_train_end = _close

    @contextmanager
    def counting(self) -> Iterator[HostReads]:
        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                what = SYNCING_OPS.get(func)
                if what is None and func in INDEXING_OPS and _bool_index(args):
                    what = f"{func} with a boolean mask"
                if what is not None:
                    counter.record(what)
                return func(*args, **(kwargs or {}))

        originals = {name: getattr(torch.Tensor, name) for name in PATCHED}

        def patched(name: str) -> Any:
            original = originals[name]

            def read(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                counter.record(f"Tensor.{name}")
                return original(tensor, *args, **kwargs)

            return read

        for name in PATCHED:
            setattr(torch.Tensor, name, patched(name))
        try:
            with Mode():
                yield self
        finally:
            for name, original in originals.items():
                setattr(torch.Tensor, name, original)

    def report(self, steps: list[int]) -> str:
        lines = []
        for step in steps:
            for what, stack in self.reads.get(step, []):
                lines.append(f"--- step {step}: {what}\n{stack}")
        return "\n".join(lines)
