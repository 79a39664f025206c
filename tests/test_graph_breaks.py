"""compile_mode / compile_fullgraph reach torch.compile, and the training step (network +
loss) of every architecture's smoke config traces as one graph: no graph break
(torch._dynamo.explain, which traces without compiling)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from attnlab.run import ConfigError, build_datamodule, build_module
from attnlab.run.train import train
from tests.conftest import compose_config
from tests.test_host_syncs import COMMON, RUNS

SMOKE = {
    "encdec-seq2seq": RUNS["seq2seq"],
    "gpt-causal_lm": RUNS["causal_lm"],
    "gpt-causal_lm-chunked": [*RUNS["causal_lm"], "task.loss_impl=chunked"],
    "gpt-seq2seq": [*RUNS["seq2seq"][:1], "model=gpt", "model.n_layers=1", *RUNS["seq2seq"][4:]],
    "bert-masked_lm": RUNS["masked_lm"],
    "bert-masked_lm_nsp": RUNS["masked_lm_nsp"],
    "bert-classification": RUNS["classification"],
    "gpt-classification": ["data=sst2", "model=gpt", "model.n_layers=1", "data.max_len=32"],
    "encdec-classification": [
        *["data=sst2", "model=encdec", "model.n_encoder_layers=1", "model.n_decoder_layers=1"],
        *["data.max_len=32", "model.pooling=mean"],
    ],
}
NEEDS_SST2 = [pytest.mark.needs_data("sst2")]


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=NEEDS_SST2 if "classification" in n else []) for n in SMOKE],
)
def test_training_step_has_no_graph_break(tmp_path: Path, name: str) -> None:
    cfg = compose_config(tmp_path, [*COMMON, *SMOKE[name]])
    pl.seed_everything(0)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    batch = next(iter(datamodule.train_dataloader()))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(module.task.step)(module.network, batch, "train")
    reasons = [str(r.reason).splitlines()[0] for r in explained.break_reasons]
    assert explained.graph_break_count == 0, reasons
    assert explained.graph_count == 1


def test_compile_mode_and_fullgraph_reach_torch_compile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict] = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append(kw) or fn)
    overrides = [*COMMON, *RUNS["causal_lm"], "compile=true"]
    for extra, want in (
        ([], {"mode": None, "fullgraph": False}),
        (["compile_mode=max-autotune-no-cudagraphs", "compile_fullgraph=true"], None),
    ):
        cfg = compose_config(tmp_path / str(len(seen)), [*overrides, *extra])
        datamodule = build_datamodule(cfg)
        build_module(cfg, datamodule)
        assert seen[-1] == (want or {"mode": "max-autotune-no-cudagraphs", "fullgraph": True})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("compile_mode=fastest", r"^compile_mode='fastest' is not valid: choose from default, "),
        ("compile_fullgraph=yes", r"^compile_fullgraph='yes' is not valid: expected true or"),
    ],
)
def test_a_bad_compile_setting_is_refused_before_any_work(
    tmp_path: Path, override: str, message: str
) -> None:
    cfg = compose_config(tmp_path, [*COMMON, *RUNS["causal_lm"], "compile=true", override])
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))
