"""`attnlab-fill-mask ckpt_path=... text="the [MASK] sat on the mat ."`: top-k per [MASK].

The text is taken as typed: it is quoted for Hydra, which would read `[...]` as a list, before
Hydra parses the command line (run/cli_args.py).

    attnlab-fill-mask ckpt_path=<run>/checkpoints/best.ckpt text="the [MASK] of the river"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig

from attnlab import run
from attnlab.run.cli_args import quote_text_values
from attnlab.run.errors import exits_on_input_error, with_config_hints
from attnlab.utils.device import choose_device

if TYPE_CHECKING:  # Lightning loads when a command runs, not for `--help`
    from attnlab.module import AttnLabModule

MASK = "[MASK]"


def fill_mask(cfg: DictConfig) -> list[list[tuple[str, float]]]:
    """For each [MASK] in `cfg.text`, the `cfg.top_k` likeliest tokens with probabilities."""
    device = choose_device(cfg.device)
    _, datamodule, module = run.load_trained_module(cfg.ckpt_path)
    module.network.to(device)
    tokenizer = getattr(datamodule, "tokenizer", None)
    return fill_masks(module, tokenizer, cfg.text, cfg.top_k, f"ckpt_path={cfg.ckpt_path}")


def fill_masks(
    module: AttnLabModule,
    tokenizer: Any,
    text: str,
    top_k: int = 5,
    source: str = "the checkpoint",
) -> list[list[tuple[str, float]]]:
    """For each [MASK] in `text`, the `top_k` likeliest tokens of a trained masked-LM module
    (`attnlab.load(...)`'s too) with their probabilities; `tokenizer` is its WordPiece. Runs
    where the network is."""
    import torch  # here, not at the top: `--help` answers without it

    if module.task.name != "masked_lm" or tokenizer is None:
        raise run.ConfigError(
            f"{source} was trained on task {module.task.name!r}; "
            "filling masks needs a masked_lm checkpoint"
        )
    if MASK not in text:
        raise run.ConfigError(f"text={text!r} has no {MASK} to fill")
    # Encode the text between the masks; "[MASK]" itself would be read as plain characters.
    ids = [tokenizer.cls_id]
    for i, piece in enumerate(text.split(MASK)):
        if i:
            ids.append(tokenizer.mask_id)
        ids.extend(tokenizer.encode(piece))
    ids.append(tokenizer.sep_id)
    input_ids = torch.tensor([ids], device=next(module.network.parameters()).device)
    module.network.eval()
    with torch.no_grad():
        probs = module.network(input_ids).softmax(-1)[0]  # (T, V)
    answers = []
    for position in (input_ids[0] == tokenizer.mask_id).nonzero().flatten().tolist():
        top = probs[position].topk(top_k)
        answers.append(
            [
                (tokenizer.tokenizer.id_to_token(i), p)  # raw pieces: "##ing" stays visible
                for i, p in zip(top.indices.tolist(), top.values.tolist(), strict=True)
            ]
        )
    return answers


@hydra.main(version_base="1.3", config_path="pkg://attnlab.conf", config_name="fill_mask")
@exits_on_input_error
def hydra_main(cfg: DictConfig) -> None:
    for n, candidates in enumerate(fill_mask(cfg), start=1):
        print(f"[MASK] {n}: " + ", ".join(f"{token} ({p:.3f})" for token, p in candidates))


# Free text as typed: `text="the [MASK] is good"` (run/cli_args.py)
main = with_config_hints("fill_mask", hydra_main, rewrite_args=quote_text_values(["text"]))

if __name__ == "__main__":
    main()
