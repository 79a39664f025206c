#!/usr/bin/env bash
# Issue 30's GPU checks in one call of at most BUDGET_S seconds (default 530: under 9 minutes),
# most important first; a stage that no longer fits is skipped and listed in skipped.txt:
#
#   OUT=docs/results/gpu-h100-<date> bash scripts/gpu_session.sh
#
#   bench        scripts/bench_gpu.py: a (attnlab Trainer), c (nanoGPT loop) and d (a with
#                task.loss_impl=chunked), batch 32 x 1024, 124M GPT, bf16, compiled; 3 fresh
#                processes each in a shuffled order, 10 windows of 20 steps; medians, a/c, d/c
#                and d/a with bootstrap intervals, both MFUs, peak memory
#   to_loss      --to-loss on Tiny Shakespeare characters (nanoGPT's shakespeare_char shape,
#                no dropout): attnlab AdamW, attnlab Muon, the nanoGPT loop, to val loss
#                TARGET (1.7) within 2000 steps: wall time and tokens
#   ddp, fsdp    attnlab-train trainer=ddp / trainer=fsdp (one GPU: FSDP does not shard), the
#                124M GPT, 60 steps, compiled; tokens/s from the throughput callback
#   fp8          bench_gpu.py a vs d with fp8=true (torchao): 1 process each, 5 windows
#   loss_memory  scripts/bench_loss.py on CUDA, bf16, batch 32: dense, chunked, liger
#   tests        the GPU-only tests of issue 30: fp8 follows bf16, chunked and liger follow
#                dense in bf16
#   largest      bench_gpu.py --largest-batch for a and d (no compile: a quick check)
#
# Before the call, on the session's machine (nothing outside the GPU machine is reachable):
#   mkdir -p .gpudata/tinyshakespeare && cp ../shared/data/tinyshakespeare/input.txt .gpudata/tinyshakespeare/
#   wheels the GPU machine may lack, into .whl/ and carried: hydra-core, omegaconf, antlr4
#   (as before), torchao (fp8), liger-kernel (loss_impl=liger): pip download --no-deps -d .whl ...
# Then copy $OUT into docs/results/ and the figures into docs/benchmarks.md (issue 30 section).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_session_out}
TARGET=${TARGET:-1.7}
mkdir -p "$OUT"
export ATTNLAB_DATA_DIR=${ATTNLAB_DATA_DIR:-$PWD/.gpudata}
export PYTHONUNBUFFERED=1 WANDB_MODE=offline HF_HUB_OFFLINE=1
deadline=$(($(date +%s) + ${BUDGET_S:-530}))
: >"$OUT/skipped.txt"

stage() { # name, seconds it may take (its timeout), command...
    local name=$1 want=$2 left
    shift 2
    left=$((deadline - $(date +%s)))
    if [ "$left" -lt "$want" ]; then
        echo "$name: skipped, $left s left of the budget, it may take $want" | tee -a "$OUT/skipped.txt"
        return
    fi
    echo "== $name $(date -u +%T) ($left s left)"
    timeout "$want" "$@" >"$OUT/$name.log" 2>&1
    echo "exit $?" >>"$OUT/$name.log"
    grep -v "^\s*$" "$OUT/$name.log" | tail -14
}

OUT="$OUT" bash scripts/gpu_checks.sh setup # install attnlab if needed; device.txt

BENCH=(python3 scripts/bench_gpu.py --batch-size 32 --windows 10 --window-steps 20)
stage bench 270 "${BENCH[@]}" --only a,c,d --repeats 3 --tuned-loss-impl chunked --no-extras \
    --timeout 120 --json "$OUT/bench_gpu.json"
stage to_loss 130 python3 scripts/bench_gpu.py --to-loss "$TARGET" --to-loss-max-steps 2000 \
    --eval-interval 100 --eval-batches 20 --timeout 60 --json "$OUT/to_loss.json"
GPT124M=(model=gpt data=toy_lm data.vocab_size=50304 data.block_size=1024 data.batch_size=16
    data.num_train_tokens=4000000 data.num_val_tokens=200000 data.num_test_tokens=200000
    model.n_layers=12 model.d_model=768 model.n_heads=12 model.dropout=0.0 model.bias=false
    trainer.max_steps=60 trainer.max_epochs=-1 trainer.limit_val_batches=0
    ++trainer.num_sanity_val_steps=0 trainer.log_every_n_steps=20
    ~callbacks.model_checkpoint ++trainer.enable_checkpointing=false test=false compile=true
    callbacks.rich_progress_bar=null print_config=false)
for trainer in ddp fsdp; do
    stage "$trainer" 60 attnlab-train "${GPT124M[@]}" "trainer=$trainer" \
        "hydra.run.dir=/tmp/gpu_session/$trainer"
    cp "/tmp/gpu_session/$trainer/metrics.json" "$OUT/${trainer}_metrics.json" 2>/dev/null
    cp "/tmp/gpu_session/$trainer/csv/metrics.csv" "$OUT/${trainer}_metrics.csv" 2>/dev/null
done
stage fp8 80 "${BENCH[@]}" --only a,d --repeats 1 --windows 5 --tuned-loss-impl dense --tuned-fp8 \
    --no-extras --timeout 75 --json "$OUT/bench_fp8.json"
stage loss_memory 30 python3 scripts/bench_loss.py --device cuda --dtype bf16 --batch-size 32 \
    --impls dense,chunked,liger --json "$OUT/bench_loss.json"
stage tests 60 python3 -m pytest -q -p no:cacheprovider tests/test_fp8.py \
    tests/test_linear_cross_entropy.py tests/test_throughput.py
stage largest 60 "${BENCH[@]}" --only a,d --repeats 1 --windows 1 --no-compile --no-extras \
    --largest-batch --timeout 25 --json "$OUT/largest_batch.json"
echo "done $(date -u +%T), $((deadline - $(date +%s))) s of the budget left" | tee "$OUT/done.txt"
