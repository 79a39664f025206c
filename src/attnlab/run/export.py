"""`attnlab-export ckpt_path=... out=DIR`: a checkpoint as a Hugging Face model directory
(safetensors weights, config.json, tokenizer.json; attnlab/interop/to_hf.py, docs/interop.md).

    attnlab-export ckpt_path=<run>/checkpoints/best.ckpt out=exported/
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from attnlab.run.errors import exits_on_input_error, with_config_hints
from attnlab.utils.errors import ConfigError

if TYPE_CHECKING:
    from attnlab.interop.tokenizer import HFTokenizer


def export(
    ckpt_path: str, out: str | Path, overwrite: bool = False
) -> tuple[Path, HFTokenizer | None]:
    """Write the checkpoint's network (safetensors + config.json) and its tokenizer to `out`;
    returns `out` and the tokenizer written (None for synthetic data). A folder that holds
    files already (an earlier export) is refused unless `overwrite`."""
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
    _, datamodule, module = load_trained_module(ckpt_path)
    return export_module(module, datamodule, out)


@hydra.main(version_base="1.3", config_path="pkg://attnlab.conf", config_name="export")
@exits_on_input_error
def hydra_main(cfg: DictConfig) -> None:
    out, tokenizer = export(cfg.ckpt_path, cfg.out, bool(cfg.get("overwrite", False)))
    if tokenizer is None:
        print(f"wrote {out} (no tokenizer: the data are token ids without text)")
    else:
        print(f"wrote {out} with its tokenizer{f' ({tokenizer.note})' if tokenizer.note else ''}")


main = with_config_hints("export", hydra_main)

if __name__ == "__main__":
    main()
