"""attnlab from Python, notebook style: train a tiny GPT and a tiny BERT on toy data (nothing
to download), load each from its run folder, and use it. Each `# %%` is a notebook cell.

    python examples/python_api.py          # about a minute on a laptop CPU

`attnlab.train` takes the overrides attnlab-train takes and returns a TrainResult (run_dir,
metrics, best_checkpoint); `attnlab.load` takes a run folder or a .ckpt file and returns the
network with its tokenizer and config (README, "Python API").
"""

from __future__ import annotations

# %%
import attnlab

# Small and quick, on the CPU; drop these for the configs' real sizes.
QUICK = [
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=1",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=4",  # a log line within the few batches of an epoch
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
]


def gpt_on_toy_lm(steps: int = 8) -> list[str]:
    """Train a GPT on the toy Markov language, load it, continue a prompt greedily."""
    # %% Train: the result names the run folder and its final metrics.
    result = attnlab.train(
        [
            "model=gpt",
            "data=toy_lm",
            "data.block_size=16",
            f"data.train_samples_per_epoch={32 * steps}",
            "data.num_val_tokens=2048",
            "data.num_test_tokens=2048",
            *QUICK,
        ]
    )
    print(result.run_dir, "val/loss", result.metrics["val/loss"])

    # %% Load the best checkpoint of that run and generate (toy symbols are numbers).
    lm = attnlab.load(result.run_dir)
    print(type(lm.network).__name__, lm.config.model.d_model)
    texts = lm.generate("1 2 3", max_new_tokens=10, temperature=0)
    print(texts[0])
    return texts


def bert_on_toy_text(steps: int = 8) -> list[list[tuple[str, float]]]:
    """Pretrain a BERT (masked LM + next-sentence prediction) on toy English, fill a mask."""
    # %% Train on sentence pairs: the loss is masked LM + NSP, and val/nsp_acc is logged.
    result = attnlab.train(
        [
            "model=bert",
            "data=toy_mlm",
            "data.nsp=true",
            "data.max_len=32",
            f"data.toy_train_lines={40 * steps}",
            "data.toy_eval_lines=100",
            "data.batch_size=16",
            *QUICK,
        ]
    )
    print("val/acc", result.metrics["val/acc"], "val/nsp_acc", result.metrics["val/nsp_acc"])

    # %% Load it and ask for the likeliest words at [MASK] (after a few steps: still poor).
    bert = attnlab.load(result.best_checkpoint or result.run_dir)
    print(bert.tokenizer.vocab_size, "WordPiece tokens")
    answers = bert.fill_mask("the dog [MASK] the cat .", top_k=3)
    print(answers[0])
    return answers


if __name__ == "__main__":
    gpt_on_toy_lm()
    bert_on_toy_text()
