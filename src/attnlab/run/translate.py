"""`attnlab-translate ckpt_path=... text="Ein Hund rennt im Park."`: translate with a checkpoint.

attnlab-translate ckpt_path=<run>/checkpoints/best.ckpt text="Ein Hund rennt im Park."
attnlab-translate ckpt_path=... input_file=test.de beam_size=1     # one line out per line in
attnlab-translate ckpt_path=... text='[Ein Hund., Eine Katze.]' beam_size=5 length_penalty=0.6
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, ListConfig

from attnlab import run
from attnlab.data.loading.download import read_lines
from attnlab.run.cli_args import quote_text_values
from attnlab.run.errors import exits_on_input_error, with_config_hints
from attnlab.run.validation import check_command
from attnlab.utils.device import choose_device

if TYPE_CHECKING:  # torch and Lightning load when a command runs, not for `--help`
    import torch

    from attnlab.module import AttnLabModule


def source_texts(cfg: DictConfig) -> list[str]:
    """`text` (a string or a list) and the lines of `input_file`, in that order."""
    texts = list(cfg.text) if isinstance(cfg.text, ListConfig) else []
    if isinstance(cfg.text, str):
        texts.append(cfg.text)
    if any(not text.strip() for text in texts):  # decodes from nothing: garbage, exit 0
        raise run.ConfigError(f"text={cfg.text!r} is not valid: give non-empty sentences")
    if cfg.input_file:
        texts.extend(read_lines(Path(cfg.input_file)))
    if not texts:
        raise run.ConfigError("nothing to translate: give text=... or input_file=...")
    return texts


def translate(cfg: DictConfig) -> list[str]:
    """Translations of the source texts, one per text, in order."""
    check_command("translate", cfg)
    texts = source_texts(cfg)  # before loading the checkpoint: bad input costs nothing
    device = choose_device(cfg.device)
    _, _, module = run.load_trained_module(cfg.ckpt_path)
    return translate_texts(
        module,
        texts,
        beam_size=cfg.beam_size,
        length_penalty=cfg.length_penalty,
        batch_size=cfg.batch_size,
        device=device,
        source=f"ckpt_path={cfg.ckpt_path}",
    )


def translate_texts(
    module: AttnLabModule,
    texts: list[str],
    *,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    source: str = "the checkpoint",
) -> list[str]:
    """Translations of `texts` by a trained seq2seq module (`attnlab.load(...)`'s too), in
    order; beam_size and length_penalty None: the run's task settings."""
    import torch

    from attnlab.data.loading.padding import pad_batch
    from attnlab.tasks.decoding import strip_special

    network, task, spec = module.network, module.task, module.task.spec
    if spec.task != "seq2seq" or spec.encode is None:
        raise run.ConfigError(
            f"{source} holds a {type(network).__name__} on task {spec.task!r}; "
            "translating needs a seq2seq model (encdec, or gpt as a prefix LM) on text"
        )
    if length_penalty is not None:
        task.length_penalty = length_penalty
    beam_size = beam_size or task.beam_size
    device = torch.device(device)
    network.to(device).eval()
    special = (spec.bos_id, spec.eos_id, spec.pad_id)
    out: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            # Cut to what the network can read, leaving room to decode.
            ids = [spec.encode(text)[: spec.max_len] for text in texts[start : start + batch_size]]
            src = pad_batch(ids, spec.pad_id).to(device)
            decoded = task.decode(network, src, src == spec.pad_id, beam_size=beam_size)
            out.extend(spec.decode(strip_special(row, *special)) for row in decoded.tolist())
    return out


@hydra.main(version_base="1.3", config_path="pkg://attnlab.conf", config_name="translate")
@exits_on_input_error
def hydra_main(cfg: DictConfig) -> None:
    for line in translate(cfg):
        print(line)


# Free text as typed: `text="the [MASK] is good"` (run/cli_args.py)
main = with_config_hints(
    "translate", hydra_main, rewrite_args=quote_text_values(["text"], lists=True)
)

if __name__ == "__main__":
    main()
