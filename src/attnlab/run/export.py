"""`attnlab-export ckpt_path=... out=DIR`: a checkpoint as a Hugging Face model directory
(safetensors weights, config.json, tokenizer.json; attnlab/interop/to_hf.py, docs/interop.md).

    attnlab-export ckpt_path=<run>/checkpoints/best.ckpt out=exported/
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from attnlab.run.errors import exits_on_input_error, with_config_hints


@hydra.main(version_base="1.3", config_path="pkg://attnlab.conf", config_name="export")
@exits_on_input_error
def hydra_main(cfg: DictConfig) -> None:
    from attnlab.interop.to_hf import export  # torch: not for `--help`

    out, tokenizer = export(cfg.ckpt_path, cfg.out)
    if tokenizer is None:
        print(f"wrote {out} (no tokenizer: the data are token ids without text)")
    else:
        print(f"wrote {out} with its tokenizer{f' ({tokenizer.note})' if tokenizer.note else ''}")


main = with_config_hints("export", hydra_main)

if __name__ == "__main__":
    main()
