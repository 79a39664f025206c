#!/usr/bin/env bash
# The GPU checks of docs/benchmarks.md in one pass, on a machine where attnlab may not be
# installed (torch, Lightning, torchmetrics and tokenizers present; hydra-core, omegaconf and
# antlr4 as wheels in .whl/ if missing):
#
#   OUT=gpu_out bash scripts/gpu_checks.sh [bench] [tests] [ddp] [fsdp] [ladder] [setup]
#   (default: the first four; setup: only install and record the device)
#
# bench: scripts/bench_gpu.py (124M GPT: attnlab Trainer, hand loop, nanoGPT loop, 3 fresh
#        processes each; MFU); issue 30's checks in one call: scripts/gpu_session.sh;
#        BENCH_ARGS="--batch-size 32" passes options to it
# tests: the CUDA-only tests (flash kernel, FlexAttention documents, TF32, trainer=fsdp,
#        generation on the GPU)
# ddp, fsdp: `attnlab-train` with trainer=ddp / trainer=fsdp, a 124M GPT on synthetic tokens,
#            compiled, bf16, 300 steps on every visible GPU; metrics.json and the CSV log kept.
# ladder: ladder=gpt_small's first three rungs (3-25M parameters), learned and rope positions, one
#         seed, at LADDER_R tokens per parameter (default 1: a short check of the GPU ladder,
#         not compute-optimal) on WikiText-2 BPE shards from attnlab-prepare
#         (WIKITEXT=<dir of train.txt.gz>); the runs' records come back as ladder.tar.gz for
#         attnlab-compare --ladder.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline HF_HUB_OFFLINE=1
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(bench tests ddp fsdp)

# Not installed: make `import attnlab` (with its config package) and `attnlab-train` work.
if ! python3 -c "import attnlab.conf" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || exit 1
    fi
    ln -sfn ../../conf src/attnlab/conf
    site=$(python3 -c "import site; print(site.getsitepackages()[0])")
    printf '%s\n' "$PWD/src" /tmp/site >"$site/attnlab-dev.pth"
    bin=$(dirname "$(command -v python3)")
    for cli in train eval generate prepare; do
        printf '#!%s\nfrom attnlab.%s import main\nmain()\n' "$bin/python3" "$cli" >"$bin/attnlab-$cli"
        chmod +x "$bin/attnlab-$cli"
    done
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, lightning.pytorch as pl; print('torch', torch.__version__, 'lightning', pl.__version__)"
    date -u +%FT%TZ
} | tee "$OUT/device.txt"

GPT124M=(model=gpt data=toy_lm data.vocab_size=50304 data.block_size=1024 data.batch_size=16
    data.num_train_tokens=4000000 data.num_val_tokens=200000 data.num_test_tokens=200000
    data.train_samples_per_epoch=100000 model.n_layers=12 model.d_model=768 model.n_heads=12
    model.dropout=0.0 trainer.max_steps=300 trainer.max_epochs=-1 trainer.val_check_interval=150
    trainer.check_val_every_n_epoch=null trainer.limit_val_batches=10 trainer.log_every_n_steps=50
    test=false compile=true callbacks.rich_progress_bar=null print_config=false)

for stage in "${stages[@]}"; do
    echo "== $stage $(date -u +%T)"
    case $stage in
    bench)
        timeout 540 python3 scripts/bench_gpu.py ${BENCH_ARGS:-} --json "$OUT/bench_gpu.json" 2>&1 |
            tee "$OUT/bench_gpu.log" | grep -v "^\s*$" | tail -25
        ;;
    tests)
        timeout 90 python3 -m pytest -q -p no:cacheprovider -m "slow or not slow" \
            tests/models/test_padding_side.py tests/models/test_document_mask.py \
            tests/test_compile.py::test_tf32_on_a_gpu_run \
            tests/test_distributed.py::test_fsdp_trains_on_one_gpu_in_bf16 \
            tests/test_first_run.py::test_generate_runs_on_the_gpu_when_there_is_one 2>&1 |
            tee "$OUT/tests_gpu.log" | tail -15
        ;;
    ddp | fsdp)
        run="/tmp/gpu_runs/$stage"
        rm -rf "$run"
        timeout 120 attnlab-train "${GPT124M[@]}" "trainer=$stage" "hydra.run.dir=$run" \
            ${TRAIN_ARGS:-} >"$OUT/train_$stage.log" 2>&1
        echo "exit $?"
        tail -5 "$OUT/train_$stage.log"
        cp "$run/metrics.json" "$OUT/${stage}_metrics.json" 2>/dev/null
        cp "$run/csv/metrics.csv" "$OUT/${stage}_metrics.csv" 2>/dev/null
        cat "$OUT/${stage}_metrics.json" 2>/dev/null
        ;;
    ladder)
        shards=/tmp/gpu_runs/wikitext2_bpe sweep=/tmp/gpu_runs/ladder
        rm -rf "$shards" "$sweep"
        timeout 120 attnlab-prepare input="${WIKITEXT:-.gpudata/wikitext-2}/train.txt.gz" \
            out="$shards" tokenizer=bpe vocab_size=8192 >"$OUT/prepare.log" 2>&1
        echo "prepare exit $?"
        timeout 360 attnlab-train -m ladder=gpt_small ladder.rung=0,1,2 \
            ladder.tokens_per_param="${LADDER_R:-1}" model.pos=learned,rope seed=1 \
            data.path="$shards" compile=true print_config=false hydra.sweep.dir="$sweep" \
            >"$OUT/ladder.log" 2>&1
        echo "ladder exit $?"
        grep -h '"val/loss"\|tokens_per_sec' "$sweep"/*/metrics.json | head -12
        (cd "$sweep" && tar czf "$OUT/ladder.tar.gz" --exclude='*.ckpt' --exclude='*.pt' .)
        ;;
    setup) ;; # the install and device.txt above only (scripts/gpu_session.sh)
    *) echo "unknown stage $stage (bench, tests, ddp, fsdp, ladder, setup)" ;;
    esac
done
