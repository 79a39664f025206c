"""Rebuild a trained run from its checkpoint alone (attnlab-eval, -generate, -translate, ...)."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from attnlab.module import AttnLabModule
from attnlab.run.artefacts import write_tokenizer_file
from attnlab.run.assemble import build_datamodule, build_module
from attnlab.run.checkpoints import load_checkpoint, load_run_config
from attnlab.run.extensions import import_extensions

log = logging.getLogger(__name__)


def load_trained_module(
    ckpt_path: str, data_overrides: DictConfig | dict | None = None
) -> tuple[DictConfig, pl.LightningDataModule, AttnLabModule]:
    """Rebuild data and module from an attnlab checkpoint and load its weights (on CPU)."""
    checkpoint = load_checkpoint(ckpt_path)
    run_cfg = load_run_config(ckpt_path, checkpoint)
    import_extensions(run_cfg)  # the run's own registered models, schemes and corpora
    with open_dict(run_cfg):
        if data_overrides:
            run_cfg.data = OmegaConf.merge(run_cfg.data, data_overrides)
        # The weights come from this checkpoint, not from where its training started ...
        if run_cfg.get("init") is not None:
            run_cfg.init.pretrained = None
            if "from_hf" in run_cfg.init:
                run_cfg.init.from_hf = None
        # ... and so does the tokenizer, wherever the run kept its copy.
        if "tokenizer_path" in run_cfg.data and checkpoint.get("tokenizer"):
            run_cfg.data.tokenizer_path = write_tokenizer_file(
                checkpoint["tokenizer"], run_cfg.paths.cache_dir
            )
        # float8 matmuls are a way to train (H100-class only); the weights are plain.
        if run_cfg.get("fp8"):
            run_cfg.fp8 = False
        # A run on sentence pairs from before the next-sentence head: its network has none.
        if run_cfg.data.get("nsp") and "network.nsp_head.weight" not in checkpoint["state_dict"]:
            log.warning(
                "%s has no next-sentence head (trained before attnlab had one): "
                "rebuilt with data.nsp=false",
                ckpt_path,
            )
            run_cfg.data.nsp = False
    datamodule = build_datamodule(run_cfg)
    module = build_module(run_cfg, datamodule)
    module.load_state_dict(checkpoint["state_dict"])
    return run_cfg, datamodule, module
