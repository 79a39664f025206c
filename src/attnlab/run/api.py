"""attnlab from Python (a notebook, a script): train a run, load a trained network, use it.

    import attnlab

    result = attnlab.train(["model=gpt", "data=toy_lm", "trainer.max_steps=50"])
    result.metrics["val/loss"], result.run_dir
    lm = attnlab.load(result.run_dir)          # or a .ckpt file
    lm.generate("The", max_new_tokens=20)

`train` takes the overrides `attnlab-train` takes, composes the same config (without a Hydra
app) and runs the same `attnlab.run.train.train`; `load` rebuilds a run from its checkpoint as
attnlab-eval and -generate do (run/trained.py). `compose_train_config` gives the config
alone, to change it before `attnlab.run.train.train(cfg)`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig, open_dict, read_write
from torch import nn

from attnlab import run
from attnlab.data.loading.padding import pad_batch
from attnlab.module import AttnLabModule
from attnlab.run.artefacts import write_failure
from attnlab.run.checkpoints import newest_intact
from attnlab.run.folder import RunFolderError
from attnlab.utils.quiet import silence_uninformative_warnings

__all__ = ["TrainResult", "Trained", "compose_train_config", "load", "train"]


@dataclass(frozen=True)
class TrainResult:
    """What a run left: its folder, final metrics (`val/...` of the last validation,
    `test/...` of the best checkpoint), and all of metrics.json in `summary`."""

    run_dir: Path
    metrics: dict[str, float]
    best_checkpoint: Path | None
    global_step: int
    summary: dict[str, Any] = field(repr=False)


@contextmanager
def _hydra_state() -> Iterator[None]:
    """Compose and run like a Hydra job, leaving Hydra's global state as it was."""
    saved_hydra, saved_config = get_gh_backup(), HydraConfig.instance().cfg
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None  # a stale one (an earlier job) would name its folders
    try:
        yield
    finally:
        restore_gh_from_backup(saved_hydra)
        HydraConfig.instance().cfg = saved_config


def _compose(overrides: Sequence[str], config_name: str) -> DictConfig:
    """The config with its `hydra` node, as a Hydra job sees it: a fresh run folder under
    paths.log_dir (hydra.run.dir), job 0, no .hydra/ folder written."""
    with initialize_config_module("attnlab.conf", version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(Path(cfg.hydra.run.dir).resolve())
        cfg.hydra.job.num = 0
        cfg.hydra.job.id = "0"
        cfg.hydra.output_subdir = None
    return cfg


def _job_config(cfg: DictConfig) -> DictConfig:
    """What a Hydra app's function receives: the config without its `hydra` node."""
    job = copy.deepcopy(cfg)
    with read_write(job), open_dict(job):
        del job["hydra"]
    return job


def compose_train_config(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The config `attnlab-train <overrides>` composes, its run directory (paths.output_dir)
    fixed: change it, then run it with `attnlab.run.train.train(cfg)`."""
    with _hydra_state():
        cfg = _compose(overrides, config_name)
        HydraConfig.instance().set_config(cfg)
        job = _job_config(cfg)
        with open_dict(job):  # fixed now: no Hydra config is needed to read it later
            job.paths.output_dir = str(job.paths.output_dir)
            job.paths.log_dir = str(job.paths.log_dir)
            job.paths.data_dir = str(job.paths.data_dir)
    return job


def train(overrides: Sequence[str] = (), *, callbacks: Sequence[pl.Callback] = ()) -> TrainResult:
    """Train like `attnlab-train <overrides>` (one run, no sweep) and return its result.

    overrides: Hydra overrides, e.g. ["model=gpt", "data=toy_lm", "trainer.max_steps=100"].
    callbacks: Lightning callbacks added to the configured ones.
    Bad values raise ConfigError (a ValueError) naming the key, before any work.
    """
    from attnlab.run.train import train as train_config

    if isinstance(overrides, str):
        raise TypeError(f"overrides is a list of strings, e.g. [{overrides!r}]")
    with _hydra_state():
        cfg = _compose(overrides, "train")
        # as attnlab-train: no Lightning tips, no deprecation notices from Lightning's own code
        silence_uninformative_warnings(cfg.get("extras", {}).get("ignore_warnings", True))
        HydraConfig.instance().set_config(cfg)  # chosen_options() names model=, data=, ...
        job, run_dir = _job_config(cfg), Path(cfg.hydra.runtime.output_dir)
        try:
            summary = train_config(job, extra_callbacks=list(callbacks))
        except Exception as error:
            # As attnlab-train: failure.json for attnlab-compare, unless the run was refused
            # (its folder holds another run, or a resume was refused before any work).
            refused = isinstance(error, RunFolderError) or (
                isinstance(error, run.ConfigError) and job.get("resume") is not None
            )
            if not refused:
                run_dir.mkdir(parents=True, exist_ok=True)
                write_failure(run_dir, error)
            raise
    best = summary.get("best_checkpoint")
    return TrainResult(
        run_dir=run_dir,
        metrics=dict(summary["metrics"]),
        best_checkpoint=Path(best) if best else None,
        global_step=int(summary["global_step"]),
        summary=summary,
    )


def find_checkpoint(path: str | Path) -> Path:
    """`path` itself if it is a file; in a run folder, the best checkpoint its metrics.json
    names, else the newest intact one in checkpoints/."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise run.ConfigError(f"path={path} is neither a checkpoint file nor a run folder")
    metrics = path / "metrics.json"
    if metrics.is_file():
        best = json.loads(metrics.read_text()).get("best_checkpoint")
        if best and Path(best).is_file():
            return Path(best)
    found, damaged = newest_intact([p for p in (path / "checkpoints").glob("*.ckpt")])
    if found is None:
        detail = f" (damaged: {'; '.join(damaged)})" if damaged else ""
        raise run.ConfigError(f"path={path} holds no checkpoint in checkpoints/{detail}")
    return found


@dataclass
class Trained:
    """A trained network with its task, tokenizer and run config, in eval mode on `device`.

    `module` is the LightningModule (its `network` and `task`); `datamodule` the run's data,
    rebuilt from the checkpoint's config (its tokenizer the checkpoint's own).
    """

    checkpoint: Path
    config: DictConfig
    module: AttnLabModule
    datamodule: pl.LightningDataModule
    device: torch.device

    @property
    def network(self) -> nn.Module:
        return self.module.network

    @property
    def tokenizer(self) -> Any | None:
        """The run's tokenizer (WordPiece or BPE), or None for data without one."""
        return getattr(self.datamodule, "tokenizer", None)

    @property
    def task_name(self) -> str:
        """The run's task: causal_lm, masked_lm, classification or seq2seq."""
        return self.module.task.name

    def _source(self) -> str:
        return f"path={self.checkpoint}"

    def generate(
        self,
        prompt: str | None = None,
        max_new_tokens: int = 100,
        *,
        num_samples: int = 1,
        temperature: float = 0.8,
        top_k: int | None = 200,
        top_p: float | None = None,
        seed: int = 1337,
    ) -> list[str]:
        """`num_samples` continuations of `prompt` (a causal-LM run), prompt included;
        None: where the data's text starts; temperature 0: greedy. As attnlab-generate."""
        from attnlab.run.generate import generate_texts

        return generate_texts(
            self.module,
            prompt,
            max_new_tokens,
            num_samples=num_samples,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            device=self.device,
            source=self._source(),
        )

    def translate(
        self,
        texts: str | Sequence[str],
        *,
        beam_size: int | None = None,
        length_penalty: float | None = None,
        batch_size: int = 64,
    ) -> list[str]:
        """Translations of `texts` (a seq2seq run), one per text; beam_size and
        length_penalty None: the run's. As attnlab-translate."""
        from attnlab.run.translate import translate_texts

        return translate_texts(
            self.module,
            [texts] if isinstance(texts, str) else list(texts),
            beam_size=beam_size,
            length_penalty=length_penalty,
            batch_size=batch_size,
            device=self.device,
            source=self._source(),
        )

    def fill_mask(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """For each [MASK] in `text` (a masked-LM run), the `top_k` likeliest tokens and their
        probabilities. As attnlab-fill-mask."""
        from attnlab.run.fill_mask import fill_masks

        return fill_masks(self.module, self.tokenizer, text, top_k, self._source())

    @torch.no_grad()
    def class_probabilities(self, texts: str | Sequence[str]) -> torch.Tensor:
        """(N, C) class probabilities of `texts` (a classification run), each read as the
        data reads it: [CLS] sentence [SEP], cut to the data's max_len."""
        spec, tokenizer = self.module.task.spec, self.tokenizer
        if self.task_name != "classification" or tokenizer is None:
            raise run.ConfigError(
                f"{self._source()} was trained on task {self.task_name!r}; classify needs a "
                "classification run"
            )
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = [
            [tokenizer.cls_id, *tokenizer.encode(text)[: spec.max_len - 2], tokenizer.sep_id]
            for text in texts
        ]
        input_ids = pad_batch(ids, spec.pad_id).to(self.device)  # (N, T)
        self.network.eval()
        return self.network.classify(input_ids, input_ids == spec.pad_id).softmax(-1).cpu()

    def classify(self, texts: str | Sequence[str]) -> list[int]:
        """The predicted class of each text (a classification run): see class_probabilities."""
        return self.class_probabilities(texts).argmax(-1).tolist()


def load(path: str | Path, device: str | torch.device = "cpu") -> Trained:
    """A trained run from its checkpoint (a .ckpt file, or a run folder: its best checkpoint),
    its network in eval mode on `device`, ready for generate / translate / fill_mask /
    classify."""
    checkpoint = find_checkpoint(path)
    config, datamodule, module = run.load_trained_module(str(checkpoint))
    device = torch.device(device)
    module.network.to(device).eval()
    return Trained(checkpoint, config, module, datamodule, device)
