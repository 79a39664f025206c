#!/usr/bin/env bash
# The README's install lines, as CI runs them: a wheel built from the checkout
# (`pip wheel --no-deps -w dist .`) installed in a fresh venv (the core, no extras) trains, and
# a feature that needs an extra fails before any work with one line naming it; the same
# checkout installed from a git URL (`pip install "attnlab @ git+..."`) runs. Run by .ci/run.
#   scripts/check_core_install.sh [VENV_DIR]      (default: a temporary folder, removed after)
# TORCH_SPEC / TORCH_INDEX as in the Makefile; pip's cache makes the installs quick.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
WORK=$(mktemp -d)
VENV=${1:-$WORK/venv}
trap 'rm -rf "$WORK"' EXIT

start=$SECONDS
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH_SPEC"
# The wheel of a copy (the tracked files as they are now: no build files left in the checkout),
# installed as a user installs it: the package, its config tree included, and no extras.
mkdir "$WORK/src"
git ls-files -z | xargs -0 cp --parents -t "$WORK/src"
(cd "$WORK/src" && "$VENV/bin/python" -m pip wheel -q --no-deps -w "$WORK/dist" .) \
    > "$WORK/pip.log" 2>&1 || { tail -40 "$WORK/pip.log"; echo "core install: wheel failed"; exit 1; }
WHEEL=$(ls "$WORK"/dist/attnlab-*.whl)
"$VENV/bin/python" -m pip install -q "$WHEEL" > "$WORK/pip.log" 2>&1 \
    || { tail -40 "$WORK/pip.log"; echo "core install: pip install failed"; exit 1; }
echo "core install: built ${WHEEL##*/} and installed it in $((SECONDS - start)) s"

# No optional package came with the core.
"$VENV/bin/python" - <<'EOF'
import importlib.util

optional = ["wandb", "tensorboardX", "optuna", "sqlalchemy", "submitit", "matplotlib", "scipy",
            "transformers", "safetensors", "lm_eval", "accelerate"]
present = [name for name in optional if importlib.util.find_spec(name) is not None]
assert not present, f"the core install brought optional packages: {present}"
EOF

cd "$WORK"
start=$SECONDS
"$VENV/bin/attnlab-train" data=toy_lm model=gpt model.d_model=32 model.n_heads=2 \
    model.n_layers=1 model.d_ff=64 data.batch_size=8 trainer.accelerator=cpu \
    trainer.max_steps=5 trainer.val_check_interval=5 trainer.limit_val_batches=2 \
    trainer.limit_test_batches=2 logger=csv hydra.run.dir="$WORK/run" > "$WORK/train.log" 2>&1 \
    || { tail -40 "$WORK/train.log"; echo "core install: training failed"; exit 1; }
test -s "$WORK/run/metrics.json" || { echo "core install: no metrics.json"; exit 1; }
echo "core install: trained 5 steps in $((SECONDS - start)) s, metrics.json written"

# Each feature of an extra: exit 2 and one line naming the extra, nothing run.
check_missing() {  # extra, command...
    local extra=$1 status=0
    shift
    "$@" > "$WORK/out.log" 2>&1 || status=$?
    if [ "$status" -ne 2 ] || ! grep -q "pip install 'attnlab\[$extra\]'" "$WORK/out.log"; then
        cat "$WORK/out.log"
        echo "core install: '$*' did not name attnlab[$extra] (exit $status)"
        exit 1
    fi
}
check_missing wandb "$VENV/bin/attnlab-train" logger=wandb data=toy_lm model=gpt
check_missing tensorboard "$VENV/bin/attnlab-train" logger=tensorboard data=toy_lm model=gpt
check_missing sweep "$VENV/bin/attnlab-train" -m hparams_search=optuna data=toy_lm model=gpt
check_missing sweep "$VENV/bin/attnlab-train" -m hydra/launcher=submitit_local seed=1,2
check_missing compare "$VENV/bin/attnlab-compare" "$WORK/run"
test ! -e "$WORK/logs" || { echo "core install: a refused command wrote logs/"; exit 1; }
check_missing lmeval "$VENV/bin/attnlab-eval" "ckpt_path=$WORK/run/checkpoints/best.ckpt" \
    "lm_eval.tasks=[arc_easy]" "hydra.run.dir=$WORK/eval"
test ! -e "$WORK/eval/metrics.json" || { echo "core install: a refused eval wrote metrics"; exit 1; }

# The README's git-URL line (`pip install "attnlab[all] @ git+https://..."`) on the same files:
# pip clones, builds and installs them; the entry points and the config tree come along.
start=$SECONDS
git -C "$WORK/src" init -q && git -C "$WORK/src" add -A
git -C "$WORK/src" -c user.name=ci -c user.email=ci@localhost commit -qm copy
"$VENV/bin/python" -m pip install -q --no-deps --force-reinstall "attnlab @ git+file://$WORK/src" \
    > "$WORK/pip.log" 2>&1 || { tail -40 "$WORK/pip.log"; echo "git install: failed"; exit 1; }
"$VENV/bin/attnlab-train" --cfg job data=toy_lm model=gpt > "$WORK/cfg.log" 2> "$WORK/cfg.err" \
    && grep -q "ToyLMDataModule" "$WORK/cfg.log" \
    || { tail -20 "$WORK/cfg.log" "$WORK/cfg.err"; echo "git install: --cfg job failed"; exit 1; }
# Without attnlab[sweep], Hydra's plugin scan of the sweeper's helpers must print nothing.
test ! -s "$WORK/cfg.err" || { cat "$WORK/cfg.err"; echo "git install: --cfg job warned"; exit 1; }
echo "git install: built and installed from git+file:// in $((SECONDS - start)) s"
echo "core install: OK (${ROOT##*/})"
