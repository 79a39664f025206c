"""`attnlab-generate ckpt_path=... prompt="ROMEO:" max_new_tokens=200`: sample from a checkpoint.

attnlab-generate ckpt_path=<run>/checkpoints/best.ckpt prompt="ROMEO:" temperature=0.8
attnlab-generate ckpt_path=... prompt="The" temperature=0     # greedy
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from attnlab import build
from attnlab.build.validation import check_command
from attnlab.utils.cli_args import quote_text_values
from attnlab.utils.config_errors import exits_on_input_error, with_config_hints
from attnlab.utils.device import choose_device


def generate(cfg: DictConfig) -> list[str]:
    """Continue `cfg.prompt` `cfg.num_samples` times; returns the texts (prompt included)."""
    import torch  # here, not at the top: `--help` answers without it

    from attnlab.protocols import Generator

    check_command("generate", cfg)
    device = torch.device(choose_device(cfg.device))
    _, _, module = build.load_trained_module(cfg.ckpt_path)
    network, spec = module.network, module.task.spec
    if not isinstance(network, Generator) or spec.encode is None:
        raise build.ConfigError(
            f"ckpt_path={cfg.ckpt_path} holds a {type(network).__name__} on task {spec.task!r}; "
            "attnlab-generate needs a decoder-only network trained on text (causal_lm)"
        )
    network.to(device).eval()
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    prompt = torch.tensor([spec.encode(cfg.prompt)] * cfg.num_samples, device=device)
    out = network.generate(
        prompt,
        cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
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


# Free text as typed: `text="the [MASK] is good"` (utils/cli_args.py)
main = with_config_hints("generate", hydra_main, rewrite_args=quote_text_values(["prompt"]))

if __name__ == "__main__":
    main()
