"""attnlab-export on the fixture checkpoints (written by an older attnlab): the CLI's files,
its one-line refusals, and its one line when transformers is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from attnlab import run as build
from attnlab.interop.hf import transformers_module
from attnlab.run.export import export
from attnlab.run.validation import ConfigError
from tests.conftest import ROOT, run_cli
from tests.interop.conftest import padded_batch, transformers

FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_an_old_gpt_checkpoint_exports_as_gpt2(tmp_path: Path) -> None:
    out, tokenizer = export(str(FIXTURES / "gpt.ckpt"), tmp_path)
    assert tokenizer is None  # toy_lm: token ids without text
    assert {"config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    ref = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ours = build.load_trained_module(str(FIXTURES / "gpt.ckpt"))[2].network.eval()
    ids = torch.randint(ours.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(ref(ids).logits, ours(ids), **TOL)


def test_an_old_bert_checkpoint_exports_with_its_tokenizer(tmp_path: Path) -> None:
    out, tokenizer = export(str(FIXTURES / "bert.ckpt"), tmp_path)
    assert tokenizer is not None and (out / "tokenizer.json").is_file()
    _, datamodule, module = build.load_trained_module(str(FIXTURES / "bert.ckpt"))
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    text = "the cat sat on the mat ."
    ids = hf_tokenizer(text).input_ids
    assert ids == [
        datamodule.tokenizer.cls_id,
        *datamodule.tokenizer.encode(text),
        datamodule.tokenizer.sep_id,
    ]
    ref = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    ours = module.network.eval()
    batch, pad = padded_batch(ours.vocab_sizes[0], 20)
    with torch.no_grad():
        expected = ref(batch, attention_mask=(~pad).long()).logits
        torch.testing.assert_close(ours(batch, pad), expected, **TOL)


def test_without_transformers_one_line_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'attnlab\[hf\]'$"):
        transformers_module("attnlab-export")


@pytest.mark.slow
def test_the_cli_refuses_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    """One subprocess (the written directory is tested in-process above): the entry point, its
    config, the exit code and the one line of a refusal."""
    # gpt_knobs: QK-norm (Qwen3's) with eps 1e-5, which Qwen3's QK-norm does not share.
    refused = run_cli(
        "attnlab-export",
        f"ckpt_path={FIXTURES / 'gpt_knobs.ckpt'}",
        f"out={tmp_path / 'knobs'}",
        cwd=tmp_path,
        check=False,
    )
    assert refused.returncode == 2 and not (tmp_path / "knobs").exists()
    message = refused.stderr.strip().splitlines()
    assert len(message) == 1 and "model.layer_norm_eps=1e-05" in message[0], refused.stderr


def test_an_earlier_export_is_not_replaced_silently(tmp_path: Path) -> None:
    """attnlab-export out=<non-empty dir> replaced an earlier export without a word."""
    (tmp_path / "config.json").write_text('{"earlier": true}')
    with pytest.raises(ConfigError, match=r"out=.* is not empty \(it holds config.json\); give"):
        export(str(FIXTURES / "bert.ckpt"), tmp_path)
    assert (tmp_path / "config.json").read_text() == '{"earlier": true}'
    out, _ = export(str(FIXTURES / "bert.ckpt"), tmp_path, overwrite=True)  # asked for
    assert "earlier" not in (out / "config.json").read_text()
