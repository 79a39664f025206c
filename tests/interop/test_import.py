"""init.from_hf=DIR: a random-weight Hugging Face GPT-2, Llama-style model and BERT (tiny,
saved with save_pretrained, tokenizers built here) become attnlab networks with the same
logits (fp32, 1e-5) and fine-tune through the training path; what attnlab cannot represent
fails naming it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from attnlab import run as build
from attnlab.data.corpus import PrepareSettings, prepare
from attnlab.run import ConfigError
from attnlab.run.train import check_config, train
from tests.conftest import compose_config
from tests.interop.checkpoints import (
    LINES,
    bert_checkpoint,
    gpt2_checkpoint,
    llama_checkpoint,
)
from tests.interop.conftest import padded_batch, transformers


def checked_datamodule(cfg):
    """As attnlab-train: the config checked (init.from_hf sets model.* there), then the data."""
    check_config(cfg)
    return build.build_datamodule(cfg)


TOL = dict(atol=1e-5, rtol=1e-5)
QUICK = [
    "trainer.accelerator=cpu",
    "trainer.max_steps=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.val_check_interval=3",
    "trainer.log_every_n_steps=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = {}
    for name, make in (
        ("gpt2", gpt2_checkpoint),
        ("llama", llama_checkpoint),
        ("bert", bert_checkpoint),
    ):
        made[name] = make(tmp_path_factory.mktemp(name))
    return made


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict[str, Path]) -> Path:
    """The toy sentences as attnlab-prepare shards, tokenized with the checkpoints' BPE."""
    root = tmp_path_factory.mktemp("shards")
    (root / "text.txt").write_text("\n".join(LINES) + "\n")
    prepare(
        PrepareSettings(
            out=str(root / "out"),
            input=str(root / "text.txt"),
            tokenizer="file",
            tokenizer_path=str(checkpoints["gpt2"] / "tokenizer.json"),
            workers=1,
            val_fraction=0.1,
            test_fraction=0.1,
        )
    )
    return root / "out"


def causal_lm_config(tmp_path: Path, directory: Path, shards: Path, *extra: str):
    overrides = ["model=gpt", "data=tokens", f"data.path={shards}", "data.block_size=32"]
    return compose_config(
        tmp_path, [*overrides, "data.batch_size=4", f"init.from_hf={directory}", *QUICK, *extra]
    )


@pytest.mark.parametrize("family", ["gpt2", pytest.param("llama", marks=pytest.mark.slow)])
def test_causal_lm_imports_with_equal_logits(
    tmp_path: Path, checkpoints: dict[str, Path], shards: Path, family: str
) -> None:
    """With a padded vocabulary (the user's choice; the checkpoint's tables get zero rows)."""
    directory = checkpoints[family]
    cfg = causal_lm_config(tmp_path, directory, shards, "model.vocab_pad_multiple=64")
    datamodule = checked_datamodule(cfg)
    network = build.build_module(cfg, datamodule).network.eval()
    assert cfg.model.d_model == 32 and cfg.model.n_layers == 2  # from config.json
    expected_knobs = {"gpt2": ("learned", "gelu_tanh"), "llama": ("rope", "swiglu")}[family]
    assert (cfg.model.pos, cfg.model.activation) == expected_knobs
    ref = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    vocab = ref.config.vocab_size
    assert network.tok_embed.weight.size(0) == -(-vocab // 64) * 64 > vocab  # padded rows
    ids = torch.randint(vocab, (3, 40))
    with torch.no_grad():
        torch.testing.assert_close(network(ids), ref(ids).logits, **TOL)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_causal_lm_fine_tunes(
    tmp_path: Path, checkpoints: dict[str, Path], shards: Path, family: str
) -> None:
    result = train(causal_lm_config(tmp_path, checkpoints[family], shards))
    assert result["global_step"] == 3 and math.isfinite(result["metrics"]["val/loss"])
    # The run's checkpoint rebuilds without the directory's weights, from its own.
    _, _, module = build.load_trained_module(result["best_checkpoint"])
    assert module.network.config.d_model == 32


def bert_config(tmp_path: Path, directory: Path, *extra: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    overrides = ["model=bert", "data=toy_mlm", "data.max_len=32", "data.batch_size=8"]
    data = ["data.toy_train_lines=200", "data.toy_eval_lines=40"]
    return compose_config(
        tmp_path, [*overrides, *data, f"init.from_hf={directory}", *QUICK, *extra]
    )


@pytest.mark.parametrize(
    "nsp", [pytest.param(False, marks=pytest.mark.slow), True], ids=["mlm", "mlm_nsp"]
)
def test_bert_imports_with_equal_logits_and_its_special_ids(
    tmp_path: Path, checkpoints: dict[str, Path], nsp: bool
) -> None:
    directory = checkpoints["bert"]
    cfg = bert_config(tmp_path, directory, f"data.nsp={str(nsp).lower()}")
    datamodule = checked_datamodule(cfg)
    network = build.build_module(cfg, datamodule).network.eval()
    tokenizer = datamodule.tokenizer
    assert (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (
        0,
        101,
        102,
        103,
    )
    assert datamodule.spec.pad_id == 0 and cfg.model.pad_id == 0
    datamodule.setup("fit")
    batch = next(iter(datamodule.val_dataloader()))
    assert (batch["input_ids"][:, 0] == 101).all()  # [CLS] is bert-base's id, not 2
    ref = transformers.BertForPreTraining.from_pretrained(directory).eval()
    ids, pad = padded_batch(ref.config.vocab_size, 20)
    segments = (torch.arange(20) >= 8).long().expand(3, -1)
    with torch.no_grad():
        out = ref(ids, attention_mask=(~pad).long(), token_type_ids=segments)
        hidden = network.encode(ids, pad, segments)
        torch.testing.assert_close(network.mlm_logits(hidden), out.prediction_logits, **TOL)
        if nsp:  # BertForPreTraining's next-sentence head, its labels swapped to ours
            nsp_logits = network.nsp_logits(hidden, pad).flip(-1)
            torch.testing.assert_close(nsp_logits, out.seq_relationship_logits, **TOL)
    assert (network.nsp_head is not None) == nsp


def write_tsv(path: Path, rows: int) -> Path:
    lines = ["sentence\tlabel"] + [f"{LINES[i]}\t{i % 2}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def classification_config(tmp_path: Path, directory: Path, *extra: str):
    data_dir = tmp_path / "data"  # beside the run folder, which must start empty
    data_dir.mkdir(parents=True, exist_ok=True)
    write_tsv(data_dir / "train.tsv", 64)
    write_tsv(data_dir / "test.tsv", 16)
    data = [
        "data=tsv_classification",
        f"data.source.data_dir={data_dir}",
        "data.source.train=train.tsv",
        "data.source.test=test.tsv",
        "data.source.val_size=16",
        "data.max_len=32",
        "data.batch_size=8",
    ]
    return compose_config(
        tmp_path,
        ["model=bert", "model.pooling=cls", *data, f"init.from_hf={directory}", *QUICK, *extra],
    )


def test_bert_classifier_starts_from_the_pooler_with_a_fresh_classifier(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    directory = checkpoints["bert"]
    cfg = classification_config(tmp_path, directory)
    datamodule = checked_datamodule(cfg)
    network = build.build_module(cfg, datamodule).network.eval()
    ref = transformers.BertForPreTraining.from_pretrained(directory).eval()
    ids, pad = padded_batch(ref.config.vocab_size, 20)
    with torch.no_grad():
        hidden = network.encode(ids, pad)
        out = ref.bert(ids, attention_mask=(~pad).long())
        torch.testing.assert_close(hidden, out.last_hidden_state, **TOL)
        torch.testing.assert_close(network.pool(hidden, pad), out.pooler_output, **TOL)


@pytest.mark.slow
def test_bert_fine_tunes_for_masked_lm_and_classification(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    # Composed one at a time: composing sets the (global) Hydra run folder.
    for name, make in (("mlm", bert_config), ("cls", classification_config)):
        result = train(make(tmp_path / name, checkpoints["bert"]))
        assert result["global_step"] == 3 and math.isfinite(result["metrics"]["val/loss"]), name


@pytest.mark.slow
def test_a_bert_for_sequence_classification_keeps_its_classifier(tmp_path: Path) -> None:
    (tmp_path / "hf").mkdir()
    directory = bert_checkpoint(tmp_path / "hf", "BertForSequenceClassification")
    cfg = classification_config(tmp_path, directory)
    datamodule = checked_datamodule(cfg)
    network = build.build_module(cfg, datamodule).network.eval()
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(directory).eval()
    ids, pad = padded_batch(ref.config.vocab_size, 20)
    with torch.no_grad():
        expected = ref(ids, attention_mask=(~pad).long()).logits
        torch.testing.assert_close(network.classify(ids, pad), expected, **TOL)


def edit_config(directory: Path, **changes) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))
    return directory


@pytest.mark.parametrize(
    ("family", "changes", "extra", "named"),
    [
        pytest.param(
            "gpt2",
            {"scale_attn_by_inverse_layer_idx": True},
            [],
            "scale_attn_by_inverse_layer_idx=true",
            marks=pytest.mark.slow,
        ),
        (
            "llama",
            {"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}},
            [],
            "rope_theta=500000",
        ),
        pytest.param(
            "llama", {"hidden_act": "gelu"}, [], "hidden_act=gelu", marks=pytest.mark.slow
        ),
        ("bert", {}, ["model=gpt"], "choose model=bert"),
        pytest.param("gpt2", {"model_type": "t5"}, [], "attnlab imports", marks=pytest.mark.slow),
    ],
    ids=["gpt2_layer_scaling", "llama3_rope_base", "gelu_gate", "wrong_model", "unknown_family"],
)
def test_what_attnlab_cannot_represent_is_refused_naming_it(
    tmp_path: Path, checkpoints: dict[str, Path], family, changes, extra, named
) -> None:
    directory = tmp_path / "hf"
    directory.mkdir()
    for file in checkpoints[family].iterdir():
        (directory / file.name).write_bytes(file.read_bytes())
    edit_config(directory, **changes)
    base = ["model=bert", "data=toy_mlm"] if family == "bert" else ["model=gpt", "data=toy_lm"]
    cfg = compose_config(tmp_path, [*base, f"init.from_hf={directory}", *QUICK, *extra])
    with pytest.raises(ConfigError, match=r"init\.from_hf") as error:
        checked_datamodule(cfg)
    assert named in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_data_with_another_vocabulary_is_refused(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    cfg = compose_config(
        tmp_path, ["model=gpt", "data=toy_lm", f"init.from_hf={checkpoints['gpt2']}", *QUICK]
    )
    datamodule = checked_datamodule(cfg)
    with pytest.raises(ConfigError, match=r"vocabulary of .* tokens but the data's has 64"):
        build.build_module(cfg, datamodule)


def test_the_checks_see_the_checkpoints_settings(
    tmp_path: Path, checkpoints: dict[str, Path], shards: Path
) -> None:
    """model=gpt's max_len (256) gives way to the checkpoint's 64 positions before the checks
    compare it with the data's block size."""
    cfg = causal_lm_config(tmp_path, checkpoints["gpt2"], shards)
    check_config(cfg)
    assert cfg.model.max_len == 64 and cfg.model.activation == "gelu_tanh"
    too_long = causal_lm_config(tmp_path, checkpoints["gpt2"], shards, "data.block_size=100")
    with pytest.raises(ConfigError, match=r"model\.max_len=64 is not valid: data\.block_size=100"):
        check_config(too_long)
