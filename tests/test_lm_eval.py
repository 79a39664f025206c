"""lm-evaluation-harness on attnlab's own network (run/harness_lm.py) and, as a cross-check,
on its Hugging Face export through lm-eval's HFLM: the same loglikelihoods, rolling
loglikelihoods and greedy generations, and the same task metrics on local tasks (a
multiple-choice and a perplexity task from JSONL written here; nothing downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from attnlab.run.validation import ConfigError
from tests.lm_eval_tasks import KNOBS, LINES, MAX_LEN, TASKS, tiny_lm, write_tasks

pytest.importorskip("lm_eval", reason="lm-eval is not installed: pip install 'attnlab[lmeval]'")
pytest.importorskip("accelerate", reason="HFLM needs accelerate: pip install 'attnlab[lmeval]'")

from lm_eval.api.instance import Instance
from lm_eval.evaluator import simple_evaluate
from lm_eval.models.huggingface import HFLM

from attnlab.run.harness import check_settings, flatten, record, task_manager
from attnlab.run.harness_lm import AttnLabLM

TOL = dict(rel=1e-5, abs=1e-4)


@pytest.fixture(params=[pytest.param("gpt2"), pytest.param("llama", marks=pytest.mark.slow)])
def both_lms(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[AttnLabLM, HFLM]:
    torch.manual_seed(0)
    network, spec, exported = tiny_lm(tmp_path / "hf", KNOBS[request.param])
    ours = AttnLabLM(network, spec, batch_size=3)
    theirs = HFLM(pretrained=str(exported), device="cpu", batch_size=3, dtype="float32")
    return ours, theirs


def requests(kind: str, arguments: list[tuple]) -> list[Instance]:
    return [Instance(kind, {}, args, i) for i, args in enumerate(arguments)]


def test_attnlab_and_hflm_on_its_export_agree(both_lms: tuple[AttnLabLM, HFLM]) -> None:
    ours, theirs = both_lms
    assert (ours.max_length, ours.prefix_token_id) == (theirs.max_length, theirs.prefix_token_id)
    long_context = " ".join(LINES[:10])  # cut from the left to max_len
    pairs = [("the cat", " sat on the mat"), ("", "a dog runs"), (long_context, " the end")]
    pairs += [(LINES[1] + " ", "the big dog")]  # a trailing space moves to the continuation
    expected = theirs.loglikelihood(requests("loglikelihood", pairs), disable_tqdm=True)
    got = ours.loglikelihood(requests("loglikelihood", pairs), disable_tqdm=True)
    assert [g for _, g in got] == [g for _, g in expected]
    assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in expected], **TOL)

    texts = [(" ".join(LINES[:12]),), (LINES[3],)]  # several windows of max_len, and one
    rolling = requests("loglikelihood_rolling", texts)
    assert len(ours.tok_encode(texts[0][0])) > 3 * MAX_LEN
    expected_rolling = theirs.loglikelihood_rolling(rolling, disable_tqdm=True)
    assert ours.loglikelihood_rolling(rolling, disable_tqdm=True) == pytest.approx(
        expected_rolling, **TOL
    )

    settings = {"until": [" the"], "max_gen_toks": 6, "do_sample": False}
    contexts = [("the dog", settings), ("a cat", settings), (LINES[5], settings)]
    generations = requests("generate_until", contexts)
    expected_text = theirs.generate_until(generations, disable_tqdm=True)
    assert ours.generate_until(generations, disable_tqdm=True) == expected_text


def evaluate(lm: object, folder: Path) -> dict:
    return simple_evaluate(
        model=lm,
        tasks=list(TASKS),
        task_manager=task_manager(list(TASKS), str(folder)),
        bootstrap_iters=0,
        log_samples=False,
    )


def test_local_tasks_give_the_same_metrics_on_both_routes(
    both_lms: tuple[AttnLabLM, HFLM], tmp_path: Path
) -> None:
    folder = write_tasks(tmp_path / "tasks")
    ours, theirs = (flatten(evaluate(lm, folder))[0] for lm in both_lms)
    names = {f"lm_eval/toy_mc/{m}" for m in ("acc", "acc_norm")}
    names |= {f"lm_eval/toy_ppl/{m}" for m in ("word_perplexity", "byte_perplexity")}
    assert names | {"lm_eval/toy_ppl/bits_per_byte"} == set(ours) == set(theirs)
    assert ours == pytest.approx(theirs, **TOL)


def test_flatten_names_metrics_by_task_and_filter() -> None:
    results = {
        "results": {
            "gsm": {"alias": "gsm", "exact_match,strict-match": 0.5, "exact_match,flexible": 0.6},
            "mc": {"acc,none": 0.25, "acc_stderr,none": 0.1, "ppl_stderr,none": "N/A"},
        },
        "n-shot": {"gsm": 5, "mc": 0},
        "versions": {"gsm": 3.0, "mc": 1.0},
    }
    metrics, details = flatten(results)
    assert metrics == {
        "lm_eval/gsm/exact_match_strict-match": 0.5,
        "lm_eval/gsm/exact_match_flexible": 0.6,
        "lm_eval/mc/acc": 0.25,
    }
    assert details["mc"]["stderr"] == {"acc": 0.1} and details["gsm"]["n_shot"] == 5


def test_record_adds_to_the_runs_metrics_and_replaces_a_task_evaluated_again(
    tmp_path: Path,
) -> None:
    summary = {"metrics": {"val/loss": 2.0, "lm_eval/mc/acc_norm": 0.1}, "tokens_seen": 9}
    (tmp_path / "metrics.json").write_text(json.dumps(summary))
    assert record(tmp_path, {"lm_eval/mc/acc": 0.5}, {"mc": {"n_shot": 0}})
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["metrics"] == {"val/loss": 2.0, "lm_eval/mc/acc": 0.5}  # acc_norm: stale
    assert written["lm_eval"] == {"mc": {"n_shot": 0}} and written["tokens_seen"] == 9
    assert not record(tmp_path / "nothing", {"lm_eval/mc/acc": 0.5}, {})


def settings(**changes: object) -> OmegaConf:
    defaults = OmegaConf.load(Path(__file__).parents[1] / "conf" / "eval.yaml").lm_eval
    return OmegaConf.merge(defaults, {"tasks": ["toy_mc"], **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tasks": []}, r"lm_eval.tasks=\[\] must be a list"),
        ({"model": "vllm"}, r"lm_eval.model=vllm; valid choices: attnlab, hf"),
        ({"batch_size": 0}, r"lm_eval.batch_size=0 must be at least 1"),
        ({"limit": -1}, r"lm_eval.limit=-1 must be a number >= 0"),
        ({"device": "tpu"}, r"lm_eval.device='tpu' is not valid"),
        ({"include_path": "/no/such/folder"}, r"lm_eval.include_path=/no/such/folder is not"),
        ({"hf_path": "/no/such/folder"}, r"lm_eval.hf_path=/no/such/folder holds no config"),
    ],
)
def test_bad_settings_are_named_before_any_work(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_settings(settings(**changes))


def test_the_hf_route_without_accelerate_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(ConfigError, match=r"model=hf needs transformers and accelerate.*lmeval"):
        check_settings(settings(model="hf"))


@pytest.mark.slow  # indexes lm-eval's own thousands of tasks: ~15 s
def test_an_unknown_task_is_named_with_the_closest(tmp_path: Path) -> None:
    folder = write_tasks(tmp_path / "tasks")
    with pytest.raises(ConfigError, match=r"'toy_mcq' is no lm-eval task; closest: toy_mc"):
        task_manager(["toy_mcq"], str(folder))


def test_a_ladder_fits_an_lm_eval_metric(tmp_path: Path) -> None:
    """attnlab-compare --ladder --stat-metric lm_eval/<task>/<metric>: the law of a downstream
    metric (here a perplexity planted to fall with compute) against training compute."""
    from attnlab.compare.ladder import compare_ladder
    from tests.test_ladder_fit import planted, read_csv, write_run

    law = planted(3.0, 1e12**0.3, 0.3)
    for job, (rung, compute) in enumerate(enumerate((1e12, 1e13, 1e14, 1e15))):
        metrics = {"val/loss": 9.0, "lm_eval/toy_ppl/word_perplexity": float(law(compute))}
        write_run(tmp_path / str(job), {"ladder.rung": rung}, metrics, compute)
    metric = "lm_eval/toy_ppl/word_perplexity"
    out = compare_ladder([tmp_path], metric=metric, n_boot=100)
    (row,) = read_csv(out / "ladder.csv")
    assert row["metric"] == metric and float(row["alpha"]) == pytest.approx(0.3, rel=0.05)


def test_a_run_folder_still_training_is_refused_before_any_work(tmp_path: Path) -> None:
    from filelock import FileLock

    from attnlab.run.folder import LOCK_FILE
    from attnlab.run.harness import check_unlocked

    (tmp_path / "metrics.json").write_text("{}")
    check_unlocked(tmp_path)  # free: nothing happens
    with FileLock(str(tmp_path / LOCK_FILE)), pytest.raises(ConfigError, match="is locked"):
        check_unlocked(tmp_path, timeout=0.1)
    with FileLock(str(tmp_path / LOCK_FILE)), pytest.raises(ConfigError, match="record=false"):
        record(tmp_path, {"lm_eval/mc/acc": 0.5}, {"mc": {}}, timeout=0.1)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {}
