"""Sample a few continuations at every validation and log them as text."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from attnlab.data.spec import prompt_ids
from attnlab.protocols import Generator


class SampleText(pl.Callback):
    """Continue each prompt with the network's `generate` (a Generator, attnlab/protocols.py;
    other networks are skipped).

    Written to `<run dir>/samples/step_<N>.txt` and, with W&B, logged as a table. A prompt
    "" starts where the data's text starts (<eos>, a newline or a toy symbol: data/spec.py).
    """

    def __init__(
        self,
        prompts: list[str] | None = None,
        max_new_tokens: int = 100,
        temperature: float = 0.8,
        top_k: int | None = 200,
        top_p: float | None = None,
        seed: int = 0,
    ) -> None:
        self.prompts = prompts or [""]
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.seed = seed

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not isinstance(pl_module.network, Generator):
            return
        spec = pl_module.task.spec
        if spec.encode is None:
            return
        # Every rank generates (the same text: same seed): under FSDP each forward gathers the
        # sharded weights from all ranks, so rank zero cannot run one alone.
        samples = [self.sample(pl_module, prompt) for prompt in self.prompts]
        self._write(trainer, samples)

    @rank_zero_only
    def _write(self, trainer: pl.Trainer, samples: list[str]) -> None:
        step = trainer.global_step
        out_dir = Path(trainer.default_root_dir) / "samples"
        out_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"=== {p!r}\n{s}\n\n" for p, s in zip(self.prompts, samples, strict=True))
        (out_dir / f"step_{step:07d}.txt").write_text(text)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):  # a wandb.Table, at the step it was sampled
                logger.log_text(
                    key="samples",
                    columns=["step", "prompt", "sample"],
                    data=[[step, p, s] for p, s in zip(self.prompts, samples, strict=True)],
                    step=step,
                )

    def sample(self, pl_module: pl.LightningModule, prompt: str) -> str:
        spec = pl_module.task.spec
        ids = torch.tensor([prompt_ids(spec, prompt)], device=pl_module.device)
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        was_training = pl_module.training
        pl_module.eval()
        out = pl_module.network.generate(
            ids,
            self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            eos_id=spec.eos_id,
            generator=generator,
        )
        pl_module.train(was_training)
        return spec.decode(out[0].tolist())
