"""Data at scale: attnlab-prepare throughput, and peak RSS and time to the first training step
of `data=tokens`, on synthetic corpora of growing size (docs/benchmarks.md, "Data at scale").

Each size gets a corpus of random lines (documents) of a 20,000-word vocabulary, generated into
a temporary directory under /tmp and deleted afterwards. It is prepared with a word-level
tokenizer (a tokenizer.json: fast, so multi-GB sizes finish on a small machine; `--tokenizer bpe`
trains byte-level BPE instead), then a tiny GPT trains a few steps on it with `data=tokens`
(every window once per epoch: the O(1)-memory order). Each is a child process: its peak RSS is
the largest of its process tree's (os.wait4), and the time to the first step runs from the
launch of the child to the end of its first training step.

    python scripts/bench_data.py                      # 0.1, 1 and 4 GB
    python scripts/bench_data.py --sizes 0.1 --tokenizer bpe --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GB = 1e9


def make_corpus(path: Path, size_gb: float, seed: int = 0) -> int:
    """Random lines of 5-60 words until `size_gb`; returns the bytes written."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = np.array(["".join(rng.choice(letters, rng.integers(2, 10))) for _ in range(20_000)])
    lines = [
        " ".join(words[rng.integers(0, len(words), rng.integers(5, 60))]) for _ in range(50_000)
    ]
    target, written = int(size_gb * GB), 0
    with open(path, "w") as file:
        while written < target:
            block = "\n".join(lines[i] for i in rng.integers(0, len(lines), 20_000)) + "\n"
            file.write(block)
            written += len(block)
    return written


def word_tokenizer(path: Path, corpus: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    with open(corpus) as file:
        sample = file.read(20_000_000).split()
    vocab = {"<eos>": 0, "<unk>": 1}
    for word in sample:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(path))


def run_child(args: list[str]) -> tuple[float, int, str, float]:
    """(seconds, peak RSS in bytes of the child's process tree, stdout, CPU seconds of the
    tree: user + system, which a loaded machine does not inflate as it does wall time)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if process.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed ({process.returncode}):\n{text[-3000:]}")
    return seconds, usage.ru_maxrss * 1024, text, usage.ru_utime + usage.ru_stime


def child_train(shards: str, steps: int) -> None:
    """Train a tiny GPT a few steps on `shards`; print the time from launch to step 1."""
    launched = float(os.environ["BENCH_LAUNCH"])
    import lightning.pytorch as pl
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from attnlab.run.train import train

    class FirstStep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if batch_idx == 0:
                # wall time since launch, and this process's CPU time (a busy machine
                # stretches the first, hardly the second)
                cpu = time.process_time()
                print(f"FIRST_STEP {time.time() - launched:.3f} {cpu:.3f}", flush=True)

    overrides = [
        "model=gpt", "model.d_model=64", "model.n_heads=2", "model.n_layers=2",
        "data=tokens", f"data.path={shards}", "data.block_size=128", "data.batch_size=16",
        f"trainer.max_steps={steps}", "trainer.limit_val_batches=0", "trainer.accelerator=cpu",
        "test=false", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null",
        "print_config=false",
    ]  # fmt: skip
    with (
        tempfile.TemporaryDirectory() as out_dir,
        initialize_config_module("attnlab.conf", version_base="1.3"),
    ):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = out_dir
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        train(cfg, extra_callbacks=[FirstStep()])


def bench_size(size: float, args: argparse.Namespace, root: Path) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix=f"bench_data_{size}gb_", dir=root))
    try:
        corpus = work / "corpus.txt"
        nbytes = make_corpus(corpus, size)
        prepare = [
            shutil.which("attnlab-prepare") or str(Path(sys.executable).parent / "attnlab-prepare")
        ]
        prepare += [f"input={corpus}", f"out={work / 'shards'}", f"workers={args.workers}"]
        if args.tokenizer == "word":
            word_tokenizer(work / "words.json", corpus)
            prepare += ["tokenizer=file", f"tokenizer_path={work / 'words.json'}"]
        else:
            prepare += [f"tokenizer={args.tokenizer}", f"vocab_size={args.vocab_size}",
                        f"sample_mb={args.sample_mb}"]  # fmt: skip
        prep_s, prep_rss, _, prep_cpu = run_child(prepare)
        index = json.loads((work / "shards" / "index.json").read_text())
        tokens = sum(s["tokens"] for shards in index["splits"].values() for s in shards)
        os.environ["BENCH_LAUNCH"] = str(time.time())
        train_cmd = [sys.executable, __file__, "--child-train", str(work / "shards")]
        train_s, train_rss, text, _ = run_child([*train_cmd, "--steps", str(args.steps)])
        marks = [line.split()[1:] for line in text.splitlines() if line.startswith("FIRST_STEP")]
        if not marks:
            raise RuntimeError(f"the training child never reported a first step:\n{text[-3000:]}")
        first, first_cpu = float(marks[0][0]), float(marks[0][1])
        mb_s = nbytes / 1e6 / prep_s
        return {
            "size_gb": nbytes / GB,
            "tokens_m": tokens / 1e6,
            "prepare_s": prep_s,
            "prepare_mb_s": mb_s,
            "prepare_mb_s_per_core": mb_s / args.workers,
            "prepare_cpu_s": prep_cpu,
            "prepare_mb_per_cpu_s": nbytes / 1e6 / prep_cpu,
            "prepare_rss_mb": prep_rss / 1e6,
            "train_rss_mb": train_rss / 1e6,
            "first_step_s": first,
            "first_step_cpu_s": first_cpu,
            "train_s": train_s,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="0.1,1,4", help="corpus sizes in GB, comma-separated")
    parser.add_argument("--tokenizer", default="word", choices=["word", "bpe", "char"])
    parser.add_argument("--vocab-size", type=int, default=8192, help="bpe")
    parser.add_argument("--sample-mb", type=float, default=16, help="bpe: training sample")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--steps", type=int, default=5, help="training steps per start")
    parser.add_argument("--tmp", default="/tmp", help="where the corpora are generated")
    parser.add_argument("--child-train", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_train:
        return child_train(args.child_train, args.steps)

    rows = []
    header = (
        "| corpus GB | tokens (M) | prepare s | MB/s | MB/s per core | MB per CPU-s "
        "| prepare peak RSS MB "
        "| train-start peak RSS MB | launch to first step s | CPU s to first step |"
    )
    print(f"tokenizer={args.tokenizer} workers={args.workers} steps={args.steps}")
    print(header)
    print("|" + "---|" * 10)
    for size in (float(s) for s in args.sizes.split(",")):
        r = bench_size(size, args, Path(args.tmp))
        rows.append(r)
        print(
            f"| {r['size_gb']:.2f} | {r['tokens_m']:.1f} | {r['prepare_s']:.1f} "
            f"| {r['prepare_mb_s']:.1f} | {r['prepare_mb_s_per_core']:.1f} "
            f"| {r['prepare_mb_per_cpu_s']:.1f} "
            f"| {r['prepare_rss_mb']:.0f} | {r['train_rss_mb']:.0f} | {r['first_step_s']:.1f} "
            f"| {r['first_step_cpu_s']:.1f} |",
            flush=True,
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(
            "largest / smallest: "
            f"prepare RSS {last['prepare_rss_mb'] / first['prepare_rss_mb']:.2f}x, "
            f"train-start RSS {last['train_rss_mb'] / first['train_rss_mb']:.2f}x, "
            f"first step {last['first_step_s'] / first['first_step_s']:.2f}x "
            f"(CPU {last['first_step_cpu_s'] / first['first_step_cpu_s']:.2f}x)"
        )


if __name__ == "__main__":
    main()
