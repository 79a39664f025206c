"""`attnlab-export ckpt_path=... out=DIR`: a checkpoint as a Hugging Face model directory
(safetensors weights, config.json, tokenizer.json, a causal LM's generation_config.json) with
a model card (README.md) and the run's config (attnlab_config.yaml); attnlab/interop/to_hf.py
and model_card.py, docs/interop.md.

    attnlab-export ckpt_path=<run>/checkpoints/best.ckpt out=exported/ license=mit
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import yaml
from omegaconf import DictConfig, OmegaConf

from attnlab.run.errors import exits_on_input_error, with_config_hints
from attnlab.utils.errors import ConfigError

if TYPE_CHECKING:
    from attnlab.interop.model_card import RunFacts
    from attnlab.interop.tokenizer import HFTokenizer

RUN_CONFIG = "attnlab_config.yaml"


def run_facts(ckpt_path: str, run_cfg: DictConfig, license: str = "other") -> RunFacts:
    """What the checkpoint's run folder (<run>/checkpoints/<name>.ckpt) records about it:
    its metrics.json, the overrides of its first attempt, the versions exporting it."""
    import lightning
    import torch
    import transformers

    import attnlab
    from attnlab.interop.model_card import RunFacts

    run_dir = Path(ckpt_path).resolve().parent.parent
    metrics, overrides = run_dir / "metrics.json", run_dir / ".hydra" / "overrides.yaml"
    summary = json.loads(metrics.read_text()) if metrics.is_file() else {}
    versions = {"attnlab": attnlab.__version__, "torch": torch.__version__}
    versions |= {"lightning": lightning.__version__, "transformers": transformers.__version__}

    def section(key: str) -> dict[str, Any]:
        value = OmegaConf.to_container(run_cfg[key]) if key in run_cfg else {}
        return value if isinstance(value, dict) else {}

    return RunFacts(
        checkpoint=f"{run_dir.name}/{Path(ckpt_path).parent.name}/{Path(ckpt_path).name}",
        model=section("model"),
        data=section("data"),
        choices=summary.get("choices") or {},
        command=yaml.safe_load(overrides.read_text()) if overrides.is_file() else None,
        summary=summary,
        versions=versions,
        license=license,
    )


def export(
    ckpt_path: str, out: str | Path, license: str = "other", overwrite: bool = False
) -> tuple[Path, HFTokenizer | None]:
    """Write the checkpoint's network (safetensors + config.json), its tokenizer, a model
    card and the run's config to `out`; returns `out` and the tokenizer written (None for
    synthetic data). A folder that holds files already (an earlier export) is refused unless
    `overwrite`."""
    from attnlab.interop.hf import transformers_module
    from attnlab.interop.to_hf import export as export_module  # torch: not for `--help`
    from attnlab.run.trained import load_trained_module

    held = sorted(p.name for p in Path(out).iterdir()) if Path(out).is_dir() else []
    if held and not overwrite:
        raise ConfigError(
            f"out={out} is not empty (it holds {', '.join(held[:3])}{', ...' * (len(held) > 3)}); "
            "give a new out, or overwrite=true to write over it"
        )
    transformers_module("attnlab-export")  # before any work
    run_cfg, datamodule, module = load_trained_module(ckpt_path)
    facts = run_facts(ckpt_path, run_cfg, license)
    out, tokenizer = export_module(module, datamodule, out, facts)
    OmegaConf.save(run_cfg, out / RUN_CONFIG)
    return out, tokenizer


@hydra.main(version_base="1.3", config_path="pkg://attnlab.conf", config_name="export")
@exits_on_input_error
def hydra_main(cfg: DictConfig) -> None:
    out, tokenizer = export(
        cfg.ckpt_path, cfg.out, cfg.license, overwrite=bool(cfg.get("overwrite", False))
    )
    if tokenizer is None:
        print(f"wrote {out} (no tokenizer: the data are token ids without text)")
    else:
        print(f"wrote {out} with its tokenizer{f' ({tokenizer.note})' if tokenizer.note else ''}")


main = with_config_hints("export", hydra_main)

if __name__ == "__main__":
    main()
