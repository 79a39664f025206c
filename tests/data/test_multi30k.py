"""Multi30k: real files, round-tripping BPE, token-budget batches, caching, download, training."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torchmetrics.text import SacreBLEUScore

from attnlab.data import ChecksumError, Multi30kDataModule, TranslationTokenizer
from attnlab.data.loading.download import read_lines
from attnlab.data.loading.token_budget import TokenBudgetBatchSampler
from attnlab.data.sources.multi30k import FILE_SPLITS
from attnlab.data.tokenizers import translation as tt
from attnlab.models import EncoderDecoder
from attnlab.tasks import Seq2SeqTask
from tests.data.conftest import assert_resumes_mid_epoch, require

SIZES = {"train": 29_000, "val": 1_014, "test": 1_000}
FILES = [f"multi30k/{name}.{lang}" for name in FILE_SPLITS.values() for lang in ("de", "en")]


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return require(*FILES)


@pytest.fixture(scope="module")
def full(data_dir: Path) -> Multi30kDataModule:
    """de -> en, joint vocabulary, every line (the tokenizer is trained once per session)."""
    dm = Multi30kDataModule(data_dir)
    dm.setup()
    return dm


def small(data_dir: Path, **kwargs: object) -> Multi30kDataModule:
    dm = Multi30kDataModule(data_dir, **{"max_lines": 300, "bpe_vocab_size": 800, **kwargs})
    dm.setup()
    return dm


def test_splits_are_complete_and_line_aligned(full: Multi30kDataModule) -> None:
    for split, size in SIZES.items():
        de, en = full.lines(split, "de"), full.lines(split, "en")
        assert len(de) == len(en) == size
        assert len(full.datasets[split]) == size
        assert all(de) and all(en)  # no empty line: a misalignment would show as one
    assert full.lines("train", "de")[0].startswith("Zwei junge weiße Männer")
    assert full.lines("train", "en")[0].startswith("Two young, White males")


def test_bpe_round_trips_real_cased_text(full: Multi30kDataModule) -> None:
    tokenizer = full.tokenizer
    assert tokenizer.joint and tokenizer.src_vocab_size == tokenizer.tgt_vocab_size == 8000
    for split in SIZES:
        for lang in ("de", "en"):
            lines = full.lines(split, lang)
            encoded = tokenizer.source.encode_batch(lines, add_special_tokens=False)
            decoded = tokenizer.source.decode_batch([e.ids for e in encoded])
            assert decoded == lines, (split, lang)
    # Unseen characters fall back to bytes; specials written as text stay text.
    odd = "Ein Hund 🐕 rennt </s> im Park."
    assert tokenizer.decode(tokenizer.encode_source(odd)) == odd
    assert tt.UNK_ID not in tokenizer.encode_source(odd)


def test_batches_are_padded_pairs_with_bos_eos(full: Multi30kDataModule) -> None:
    batch = next(iter(full.val_dataloader()))
    src, tgt, index = batch["src"], batch["tgt"], batch["index"]
    assert src.shape[0] == tgt.shape[0] == index.shape[0]
    assert (tgt[:, 0] == tt.BOS_ID).all()
    row = int(index[0])
    assert full.tokenizer.decode(tgt[0].tolist()) == full.lines("val", "en")[row]
    assert full.tokenizer.decode_source(src[0].tolist()) == full.lines("val", "de")[row]
    assert full.spec.decode(tgt[0].tolist()) == full.lines("val", "en")[row]
    lengths = (src != tt.PAD_ID).sum(1)
    assert (src[torch.arange(len(src)), lengths - 1] == tt.EOS_ID).all()


def test_token_budget_holds_and_every_example_comes_once(full: Multi30kDataModule) -> None:
    sampler = full.batch_sampler("train")
    dataset = full.datasets["train"]
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            longest = max(dataset.src_lengths[batch].max(), dataset.tgt_lengths[batch].max())
            assert len(batch) * longest <= full.max_tokens
        seen = np.concatenate(batches)
        assert np.array_equal(np.sort(seen), np.arange(len(dataset)))
        orders.append(seen)
    assert not np.array_equal(*orders)  # reshuffled every epoch
    loader = full.train_dataloader()
    _set_sampler_epoch(loader, 7)  # what Lightning does at the start of every epoch
    assert loader.batch_sampler.epoch == 7
    val = full.batch_sampler("val")
    assert list(val) == list(full.batch_sampler("val"))  # evaluation: one fixed order


def test_padded_batches_are_mostly_real_tokens(full: Multi30kDataModule) -> None:
    share = full.non_pad_share("train")
    assert share > 0.8, share


def test_ddp_ranks_get_disjoint_equal_shares() -> None:
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(3, 40, 1000), rng.integers(3, 40, 1000)
    shares = [
        list(TokenBudgetBatchSampler(src, tgt, 256, shuffle=True, seed=3, num_replicas=3, rank=r))
        for r in range(3)
    ]
    assert len({len(share) for share in shares}) == 1
    everything = TokenBudgetBatchSampler(src, tgt, 256, shuffle=True, seed=3).batches_of_epoch()
    served = [tuple(b) for share in shares for b in share]
    assert {tuple(b) for b in everything} == set(served)  # all batches, a few repeated to even up
    assert len(served) - len(everything) < 3


def test_english_to_german(data_dir: Path) -> None:
    dm = small(data_dir, source_lang="en", target_lang="de")
    src, tgt, _ = dm.datasets["val"][5]
    assert dm.tokenizer.decode_source(src) == dm.lines("val", "en")[5]
    assert dm.tokenizer.decode(tgt) == dm.lines("val", "de")[5]
    with pytest.raises(ValueError, match="translates between"):
        Multi30kDataModule(data_dir, source_lang="de", target_lang="de")


def test_separate_vocabularies_feed_an_encoder_decoder(data_dir: Path) -> None:
    dm = small(data_dir, vocab="separate", bpe_vocab_size=700, tgt_bpe_vocab_size=600)
    spec = dm.spec
    assert not dm.tokenizer.joint
    assert (spec.vocab_size, spec.tgt_vocab_size) == (700, 600)
    line = dm.lines("train", "de")[0]
    assert dm.tokenizer.decode_source(dm.tokenizer.encode_source(line)) == line
    # What build.network_arguments must pass for separate vocabularies.
    network = EncoderDecoder(
        vocab_size=spec.vocab_size,
        tgt_vocab_size=spec.tgt_vocab_size,
        share_embeddings=False,
        d_model=16,
        n_heads=2,
        d_ff=32,
        n_encoder_layers=1,
        n_decoder_layers=1,
    )
    batch = next(iter(dm.train_dataloader()))
    task = Seq2SeqTask(spec)
    loss = task.step(network, batch, "train")
    assert torch.isfinite(loss)
    assert task.bleu == "sacrebleu"
    assert isinstance(task.metrics("val")["bleu"], SacreBLEUScore)


def test_tokenizer_json_keeps_both_sides(data_dir: Path, tmp_path: Path) -> None:
    for vocab in ("joint", "separate"):
        tokenizer = small(data_dir, vocab=vocab).tokenizer
        tokenizer.save(tmp_path / "tok.json")
        loaded = TranslationTokenizer.from_file(tmp_path / "tok.json")
        assert loaded.fingerprint == tokenizer.fingerprint
        assert loaded.joint == tokenizer.joint
        dm = Multi30kDataModule(data_dir, max_lines=300, tokenizer_path=tmp_path / "tok.json")
        assert dm.tokenizer.fingerprint == tokenizer.fingerprint


def test_cache_is_reused_and_rebuilt_when_settings_change(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = small(data_dir, cache_dir=cache)
    entries = sorted(p.name for p in cache.rglob("*"))
    trained = []
    monkeypatch.setattr(
        "attnlab.data.sources.multi30k.train_metaspace_bpe",
        lambda lines, size: trained.append(size) or tt.train_metaspace_bpe(lines, size),
    )
    again = small(data_dir, cache_dir=cache)
    assert trained == [] and sorted(p.name for p in cache.rglob("*")) == entries
    assert again.tokenizer.fingerprint == first.tokenizer.fingerprint
    assert np.array_equal(
        again.datasets["val"].source.content, first.datasets["val"].source.content
    )
    bigger = small(data_dir, cache_dir=cache, bpe_vocab_size=900)
    assert trained == [900]
    assert bigger.tokenizer.src_vocab_size == 900
    assert len(list(cache.rglob("*.tokenizer.json"))) == 2  # the old entry is kept


def test_download_from_local_server_checks_sha256(
    data_dir: Path, http_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, served = http_server
    for name in FILES:
        shutil.copy(data_dir / f"{name}.gz", served / f"{Path(name).name}.gz")
    target = tmp_path / "data"
    dm = Multi30kDataModule(target, tmp_path / "cache", max_lines=50, url_base=base)
    dm.prepare_data()
    assert sorted(p.name for p in (target / "multi30k").iterdir()) == sorted(
        f"{Path(name).name}.gz" for name in FILES
    )
    assert dm.lines("val", "de") == read_lines(data_dir / "multi30k/val.de.gz")[:50]
    # A file that changed at the source is refused, and nothing is saved.
    (served / "val.en.gz").write_bytes(gzip.compress(b"Something else.\n"))
    other = tmp_path / "other"
    with pytest.raises(ChecksumError, match=r"val\.en\.gz has sha256"):
        Multi30kDataModule(other, tmp_path / "cache", url_base=base).prepare_data()
    assert not (other / "multi30k" / "val.en.gz").exists()


def test_separate_vocabularies_train_and_refuse_a_shared_table(tmp_path: Path) -> None:
    from attnlab import run as build
    from tests.conftest import compose_config

    overrides = [
        "experiment=encdec_multi30k",
        "data.vocab=separate",
        "data.max_lines=300",
        "data.bpe_vocab_size=400",
        "data.tgt_bpe_vocab_size=350",
        "model.d_model=32",
        "model.n_heads=2",
        "model.d_ff=64",
    ]
    cfg = compose_config(tmp_path, overrides)
    network = build.build_module(cfg, build.build_datamodule(cfg)).network
    assert network.src_embed.embedding.num_embeddings != network.lm_head.out_features
    cfg = compose_config(tmp_path, [*overrides, "model.share_embeddings=true"])
    with pytest.raises(build.ConfigError, match=r"model\.share_embeddings=false"):
        build.build_module(cfg, build.build_datamodule(cfg))


def test_training_loader_resumes_mid_epoch(data_dir: Path) -> None:
    """Token-budget batches: the resumed epoch skips whole batches without loading them."""
    dm = small(data_dir, max_tokens=256)
    assert len(dm.train_dataloader()) > 8
    assert_resumes_mid_epoch(dm.train_dataloader)
