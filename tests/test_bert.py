"""BERT workflow: masked-LM pretraining, fill-mask, SST-2 from scratch and from the checkpoint."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from attnlab import run as build
from attnlab.run import ConfigError
from attnlab.run.train import train
from tests.conftest import compose_config, run_cli

SMALL = [
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=2",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]
TOY_PRETRAIN = ["experiment=bert_mlm_wikitext2", "data=toy_mlm", "data.max_len=64", *SMALL]
# Fine-tuning on SST-2 with the pretrained model's sequence length (its position table).
FINETUNE = ["experiment=bert_sst2_finetune", *SMALL, "data.max_len=64"]


@pytest.fixture(scope="module")
def mlm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny masked-LM checkpoint pretrained on the toy corpus."""
    run_dir = tmp_path_factory.mktemp("mlm")
    result = train(compose_config(run_dir, TOY_PRETRAIN))
    return Path(result["best_checkpoint"])


@pytest.mark.parametrize(
    "overrides",
    [
        ["experiment=bert_mlm_wikitext2", "data.max_lines=300", "data.wordpiece_vocab_size=2000"],
        [
            "experiment=bert_mlm_wikitext2",
            "data=shakespeare_mlm",
            "data.max_lines=300",
            "data.wordpiece_vocab_size=1000",
        ],
        [
            "experiment=bert_mlm_wikitext2",
            "data=wikitext2_mlm",
            "data.nsp=true",
            "data.max_lines=300",
            "data.wordpiece_vocab_size=2000",
        ],
        ["experiment=bert_mlm_sst2", "data.max_lines=300", "data.wordpiece_vocab_size=1000"],
        ["experiment=bert_sst2"],
        ["experiment=bert_sst2", "model.pooling=mean", "model.norm_first=true"],
    ],
    ids=[
        "mlm_wikitext2",
        "mlm_shakespeare",
        "mlm_nsp_pairs",
        "mlm_sst2",
        "sst2_scratch",
        "sst2_mean_preln",
    ],
)
def test_bert_experiment_trains_a_few_steps(tmp_path: Path, overrides: list[str]) -> None:
    result = train(compose_config(tmp_path, [*overrides, *SMALL]))
    metrics = result["metrics"]
    assert 1 <= result["global_step"] <= 4  # 300 Shakespeare lines pack into a single batch
    names = ("val/loss", "val/acc", "test/acc") + (
        ("val/ppl",) if "mlm" in overrides[0] else ("val/f1", "test/f1")
    )
    for name in names:
        assert math.isfinite(metrics[name]), name


# mean: the experiment's default; cls: BERT's pooler, a dense layer that must start fresh too.
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_finetune_loads_body_starts_heads_fresh_and_reuses_tokenizer(
    tmp_path: Path, mlm_checkpoint: Path, pooling: str
) -> None:
    overrides = [*FINETUNE, f"init.pretrained={mlm_checkpoint}", f"model.pooling={pooling}"]
    cfg = compose_config(tmp_path, overrides)
    datamodule = build.build_datamodule(cfg)
    module = build.build_module(cfg, datamodule)
    checkpoint = torch.load(mlm_checkpoint, weights_only=False)
    saved = {k.removeprefix("network."): v for k, v in checkpoint["state_dict"].items()}
    network = module.network
    body = network.body_state_dict()
    assert body and all(torch.equal(value, saved[key]) for key, value in body.items())
    # Fresh heads: the MLM checkpoint has a masked-LM head only.
    assert network.pooler is not None and network.classifier is not None
    assert (network.pooler.dense is not None) == (pooling == "cls")
    assert not any(key.startswith(("pooler.", "classifier.")) for key in saved)
    assert any(key.startswith("mlm_head.") for key in saved) and network.mlm_head is None
    assert datamodule.tokenizer.fingerprint == checkpoint["tokenizer"]["fingerprint"]
    result = train(cfg)
    assert math.isfinite(result["metrics"]["test/acc"])


def test_continued_pretraining_starts_from_the_whole_masked_lm(
    tmp_path: Path, mlm_checkpoint: Path
) -> None:
    overrides = ["experiment=bert_mlm_sst2_continued", f"init.pretrained={mlm_checkpoint}"]
    cfg = compose_config(tmp_path, [*overrides, *SMALL, "data.max_len=64", "data.max_lines=300"])
    datamodule = build.build_datamodule(cfg)
    module = build.build_module(cfg, datamodule)
    checkpoint = torch.load(mlm_checkpoint, weights_only=False)
    saved = {k.removeprefix("network."): v for k, v in checkpoint["state_dict"].items()}
    state = module.network.state_dict()
    assert any(key.startswith("mlm_head.") for key in state)
    assert state.keys() == saved.keys()
    assert all(torch.equal(value, saved[key]) for key, value in state.items())
    assert datamodule.tokenizer.fingerprint == checkpoint["tokenizer"]["fingerprint"]
    result = train(cfg)
    assert math.isfinite(result["metrics"]["val/loss"])


def test_finetune_with_a_different_shape_names_the_tensors(
    tmp_path: Path, mlm_checkpoint: Path
) -> None:
    cfg = compose_config(
        tmp_path,
        [
            *FINETUNE,
            f"init.pretrained={mlm_checkpoint}",
            "model.d_model=64",
        ],
    )
    with pytest.raises(ConfigError, match=r"tok_embed\.embedding\.weight: checkpoint \(\d+, 32\)"):
        build.build_module(cfg, build.build_datamodule(cfg))


def test_finetune_with_another_tokenizer_fails(tmp_path: Path, mlm_checkpoint: Path) -> None:
    other = compose_config(tmp_path, ["experiment=bert_sst2", *SMALL])
    other_tokenizer = build.build_datamodule(other).tokenizer  # SST-2's own WordPiece
    path = tmp_path / "other.json"
    other_tokenizer.save(path)
    cfg = compose_config(
        tmp_path,
        [
            *FINETUNE,
            f"init.pretrained={mlm_checkpoint}",
            f"data.tokenizer_path={path}",
        ],
    )
    with pytest.raises(ConfigError, match="tokenizer"):
        build.build_module(cfg, build.build_datamodule(cfg))


def test_finetune_experiment_requires_a_checkpoint(tmp_path: Path) -> None:
    result = run_cli("attnlab-train", "experiment=bert_sst2_finetune", cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "init.pretrained" in result.stderr


def test_freeze_layers_stops_gradients(tmp_path: Path, mlm_checkpoint: Path) -> None:
    cfg = compose_config(
        tmp_path,
        [
            *FINETUNE,
            f"init.pretrained={mlm_checkpoint}",
            "init.freeze_layers=1",
        ],
    )
    network = build.build_module(cfg, build.build_datamodule(cfg)).network
    assert not any(p.requires_grad for p in network.layers[0].parameters())
    assert all(p.requires_grad for p in network.layers[1].parameters())
    assert network.classifier.weight.requires_grad


def test_body_lr_scale_gives_the_pretrained_body_a_lower_lr(
    tmp_path: Path, mlm_checkpoint: Path
) -> None:
    cfg = compose_config(
        tmp_path,
        [*FINETUNE, f"init.pretrained={mlm_checkpoint}", "init.body_lr_scale=0.1"],
    )
    module = build.build_module(cfg, build.build_datamodule(cfg))
    optimizer, _ = module.build_optimizer(total_steps=10)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["body/decay"]["initial_lr"] == pytest.approx(0.1 * cfg.optimizer.lr)
    assert groups["decay"]["initial_lr"] == pytest.approx(cfg.optimizer.lr)
    head = {id(p) for p in groups["decay"]["params"] + groups["no_decay"]["params"]}
    assert id(module.network.classifier.weight) in head
    assert id(module.network.layers[0].self_attn.qkv_proj.weight) not in head


def test_fill_mask_cli_prints_top_k_per_mask(tmp_path: Path, mlm_checkpoint: Path) -> None:
    out = run_cli(
        "attnlab-fill-mask",
        f"ckpt_path={mlm_checkpoint}",
        "text=the [MASK] sees a [MASK] .",  # as the shell passes text="the [MASK] ..."
        "top_k=3",
        cwd=tmp_path,
    )
    lines = out.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["[MASK] 1", "[MASK] 2"]
    for line in lines:
        probabilities = [float(p) for p in re.findall(r"\((\d\.\d+)\)", line)]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
