"""A GPT and a BERT trained with attnlab go out through attnlab-export and back in through
init.from_hf with equal logits, and the exported tokenizer tokenizes as attnlab's did."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnlab import run as build
from attnlab.data.corpus import PrepareSettings, prepare
from attnlab.data.tokenizers.char import CharVocab
from attnlab.data.tokenizers.line import LineTokenizer, train_word_level
from attnlab.data.tokenizers.wordpiece import WordPieceTokenizer, train_wordpiece
from attnlab.interop.tokenizer import hf_tokenizer
from attnlab.run.export import export
from attnlab.run.train import check_config, train
from tests.conftest import compose_config
from tests.interop.checkpoints import LINES
from tests.interop.conftest import padded_batch, transformers

TOL = dict(atol=1e-5, rtol=1e-5)
TEXT = ["the cat sat on the mat .", LINES[3], "Zebras, unknown; words!"]
SMALL = [
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=2",
    "trainer.accelerator=cpu",
    "trainer.max_steps=4",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.val_check_interval=4",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]


def assert_tokenizes_alike(directory: Path, encode, texts=TEXT) -> None:
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    for text in texts:
        assert hf(text, add_special_tokens=False).input_ids == encode(text), text


class _Data:
    """Just enough of a datamodule for hf_tokenizer: a spec with an encode method."""

    def __init__(self, owner) -> None:
        self.spec = type("Spec", (), {"encode": owner.encode, "eos_id": None})()


@pytest.mark.parametrize("kind", ["char", "word", "wordpiece"])
def test_exported_tokenizers_tokenize_like_attnlab(tmp_path: Path, kind: str) -> None:
    if kind == "char":
        owner = CharVocab.from_text("".join(TEXT) + "\n")
    elif kind == "word":
        owner = LineTokenizer(train_word_level(LINES + TEXT))
    else:
        owner = WordPieceTokenizer(train_wordpiece(LINES, 200))
    exported = hf_tokenizer(_Data(owner))
    assert exported is not None
    exported.save(tmp_path, 64)
    assert_tokenizes_alike(tmp_path, owner.encode)
    if kind == "wordpiece":  # [CLS] text [SEP], as attnlab's classification data reads it
        hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
        ids = hf(TEXT[0]).input_ids
        assert ids == [owner.cls_id, *owner.encode(TEXT[0]), owner.sep_id]
        assert hf.mask_token_id == owner.mask_id and hf.pad_token_id == owner.pad_id


@pytest.mark.slow
def test_a_trained_gpt_round_trips(tmp_path: Path) -> None:
    (tmp_path / "text.txt").write_text("\n".join(LINES) + "\n")
    shards = tmp_path / "shards"
    prepare(
        PrepareSettings(
            out=str(shards),
            input=str(tmp_path / "text.txt"),
            tokenizer="bpe",
            vocab_size=300,
            workers=1,
            val_fraction=0.1,
            test_fraction=0.1,
        )
    )
    data = ["model=gpt", "data=tokens", f"data.path={shards}", "data.block_size=32"]
    result = train(compose_config(tmp_path / "run", [*data, "data.batch_size=4", *SMALL]))
    _, datamodule, module = build.load_trained_module(result["best_checkpoint"])
    ours = module.network.eval()
    out, tokenizer = export(result["best_checkpoint"], tmp_path / "hf")
    assert tokenizer is not None
    assert_tokenizes_alike(out, datamodule.spec.encode, [LINES[0], LINES[5]])
    ref = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(ref).__name__ == "GPT2LMHeadModel"
    ids = torch.randint(ours.vocab_size, (2, 32))
    cfg = compose_config(tmp_path / "again", [*data, f"init.from_hf={out}", *SMALL[3:]])
    check_config(cfg)  # as attnlab-train: init.from_hf sets model.* there
    again = build.build_module(cfg, build.build_datamodule(cfg)).network.eval()
    with torch.no_grad():
        torch.testing.assert_close(ref(ids).logits, ours(ids), **TOL)
        torch.testing.assert_close(again(ids), ours(ids), **TOL)


@pytest.mark.slow
def test_a_trained_bert_with_nsp_round_trips(tmp_path: Path) -> None:
    data = ["model=bert", "data=toy_mlm", "data.nsp=true", "data.max_len=32"]
    data += ["data.toy_train_lines=300", "data.toy_eval_lines=40", "data.batch_size=8"]
    result = train(compose_config(tmp_path / "run", [*data, *SMALL]))
    _, datamodule, module = build.load_trained_module(result["best_checkpoint"])
    ours = module.network.eval()
    out, tokenizer = export(result["best_checkpoint"], tmp_path / "hf")
    assert tokenizer is not None
    assert_tokenizes_alike(out, datamodule.tokenizer.encode, [LINES[0], LINES[7]])
    ref = transformers.AutoModelForPreTraining.from_pretrained(out).eval()
    assert type(ref).__name__ == "BertForPreTraining"
    cfg = compose_config(tmp_path / "again", [*data, f"init.from_hf={out}", *SMALL[3:]])
    check_config(cfg)
    again_data = build.build_datamodule(cfg)
    assert again_data.tokenizer.fingerprint == datamodule.tokenizer.fingerprint
    again = build.build_module(cfg, again_data).network.eval()
    ids, pad = padded_batch(ours.vocab_sizes[0], 20)
    with torch.no_grad():
        hidden = ours.encode(ids, pad)
        out_ref = ref(ids, attention_mask=(~pad).long())
        torch.testing.assert_close(out_ref.prediction_logits, ours.mlm_logits(hidden), **TOL)
        expected_nsp = ours.nsp_logits(hidden, pad)
        torch.testing.assert_close(out_ref.seq_relationship_logits.flip(-1), expected_nsp, **TOL)
        torch.testing.assert_close(again(ids, pad), ours(ids, pad), **TOL)
        torch.testing.assert_close(
            again.nsp_logits(again.encode(ids, pad), pad), expected_nsp, **TOL
        )
