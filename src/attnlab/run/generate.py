"""`attnlab-generate ckpt_path=... prompt="ROMEO:" max_new_tokens=200`: sample from a checkpoint.

attnlab-generate ckpt_path=<run>/checkpoints/best.ckpt prompt="ROMEO:" temperature=0.8
attnlab-generate ckpt_path=... prompt="The" temperature=0     # greedy
attnlab-generate ckpt_path=<data=toy_lm run> prompt="3 17 42"  # toy symbols: integers
attnlab-generate ckpt_path=...                 # no prompt: where the data's text starts
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from attnlab import run
from attnlab.run.cli_args import quote_text_values
from attnlab.run.errors import exits_on_input_error, with_config_hints
from attnlab.run.validation import check_command
from attnlab.utils.device import choose_device

if TYPE_CHECKING:  # torch and Lightning load when a command runs, not for `--help`
    import torch

    from attnlab.module import AttnLabModule


def generate(cfg: DictConfig) -> list[str]:
    """Continue `cfg.prompt` `cfg.num_samples` times; returns the texts (prompt included)."""
    check_command("generate", cfg)
    device = choose_device(cfg.device)
    _, _, module = run.load_trained_module(cfg.ckpt_path)
    return generate_texts(
        module,
        cfg.prompt,
        cfg.max_new_tokens,
        num_samples=cfg.num_samples,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        seed=cfg.seed,
        device=device,
        source=f"ckpt_path={cfg.ckpt_path}",
    )


def generate_texts(
    module: AttnLabModule,
    prompt: str | None,
    max_new_tokens: int,
    *,
    num_samples: int = 1,
    temperature: float = 0.8,
    top_k: int | None = 200,
    top_p: float | None = None,
    seed: int = 1337,
    device: str | torch.device = "cpu",
    source: str = "the checkpoint",
) -> list[str]:
    """`num_samples` continuations of `prompt` by a trained module (`attnlab.load(...)`'s
    too), prompt included; prompt None: where the data's text starts (data/spec.py's
    start_ids).
    `source` names the checkpoint in the error of a wrong network."""
    import torch

    from attnlab.data.spec import prompt_ids
    from attnlab.protocols import Generator

    network, spec = module.network, module.task.spec
    if not isinstance(network, Generator) or spec.encode is None:
        raise run.ConfigError(
            f"{source} holds a {type(network).__name__} on task {spec.task!r}; "
            "generating needs a decoder-only network trained on text (causal_lm)"
        )
    ids = prompt_ids(spec, prompt)  # before any work on the device (a bad one: exit 2)
    device = torch.device(device)
    network.to(device).eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor([ids] * num_samples, device=device)
    out = network.generate(
        ids,
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        eos_id=spec.eos_id,
        generator=generator,
    )
    return [spec.decode(row) for row in out.tolist()]


@hydra.main(version_base="1.3", config_path="pkg://attnlab.conf", config_name="generate")
@exits_on_input_error
def hydra_main(cfg: DictConfig) -> None:
    for i, text in enumerate(generate(cfg)):
        if cfg.num_samples > 1:
            print(f"--- sample {i}")
        print(text)


# Free text as typed: `text="the [MASK] is good"` (run/cli_args.py)
main = with_config_hints("generate", hydra_main, rewrite_args=quote_text_values(["prompt"]))

if __name__ == "__main__":
    main()
