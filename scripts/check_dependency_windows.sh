#!/usr/bin/env bash
# Both ends of the dependency windows that break most often, each in a small venv of its own
# (run by .ci/run): the Hugging Face interop tests on the lowest transformers pyproject.toml
# allows and on the newest 5.x, the sweeper tests on the lowest Optuna allowed and the newest
# 5.x. The main venv (`make test`) runs everything on the newest versions pip picks.
#   scripts/check_dependency_windows.sh [NAME ...]     (default: every window below)
# Venvs are kept in $ATTNLAB_WINDOWS_CACHE (default ~/.cache/attnlab/dependency-windows), one
# per window and pyproject.toml, and re-checked each run (`pip install` with the window's
# requirement: the newest ones upgrade when a release appears); attnlab itself is reinstalled
# from a wheel of the checkout every time. TORCH_SPEC as in the Makefile; TEST_WORKERS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
WORKERS=${TEST_WORKERS:-2}
CACHE=${ATTNLAB_WINDOWS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/attnlab/dependency-windows}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

INTEROP="tests/interop tests/models/test_hf_gpt2_parity.py tests/models/test_hf_bert_parity.py"
# The W&B sweep's two tests need wandb: the main venv runs them.
SWEEPER="tests/test_sweeps.py --deselect tests/test_sweeps.py::test_wandb_sweep"
# name | extra | requirement | upgrade (newest) or not | tests
WINDOWS=(
    "transformers-lowest|hf|transformers>=4.51,<4.52|no|$INTEROP"
    "transformers-newest|hf|transformers>=5,<6|yes|$INTEROP"
    "optuna-lowest|sweep|optuna>=4.0,<4.1|no|$SWEEPER"
    "optuna-newest|sweep|optuna>=5,<6|yes|$SWEEPER"
)

start_all=$SECONDS
mkdir "$WORK/src"
git ls-files -z | xargs -0 cp --parents -t "$WORK/src"
(cd "$WORK/src" && "$PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" .) > "$WORK/pip.log" 2>&1 \
    || { tail -40 "$WORK/pip.log"; echo "windows: building the wheel failed"; exit 1; }
WHEEL=$(ls "$WORK"/dist/attnlab-*.whl)
key_base=$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"|$TORCH_SPEC"

run_window() {  # name extra requirement upgrade tests...
    local name=$1 extra=$2 requirement=$3 upgrade=$4 start=$SECONDS
    shift 4
    local key venv package=${requirement%%[<>=]*}
    key=$( (echo "$key_base|$extra|$requirement"; cat pyproject.toml) | sha256sum | cut -c1-12)
    venv="$CACHE/$name-$key"
    if [ ! -x "$venv/bin/python" ]; then
        rm -rf "$CACHE/$name"-*  # venvs of an older pyproject.toml
        "$PYTHON" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip > "$WORK/pip.log" 2>&1
        "$venv/bin/python" -m pip install -q ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} \
            "$TORCH_SPEC" > "$WORK/pip.log" 2>&1 \
            || { tail -40 "$WORK/pip.log"; echo "window $name: torch failed"; return 1; }
    fi
    local flags=()
    [ "$upgrade" = yes ] && flags=(--upgrade --upgrade-strategy only-if-needed)
    "$venv/bin/python" -m pip install -q "${flags[@]}" "$WHEEL[$extra]" "$requirement" \
        pytest pytest-timeout pytest-xdist > "$WORK/pip.log" 2>&1 \
        && "$venv/bin/python" -m pip install -q --no-deps --force-reinstall "$WHEEL" \
        >> "$WORK/pip.log" 2>&1 \
        || { tail -40 "$WORK/pip.log"; echo "window $name: pip install failed"; return 1; }
    local version
    version=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$package'))")
    echo "window $name: $package $version, installed in $((SECONDS - start)) s"
    # Tests from the checkout, attnlab from the venv (the wheel): no src/ on the path.
    if ! (cd "$ROOT" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "slow or not slow" \
        -n "$WORKERS" --dist worksteal "$@" > "$WORK/$name.log" 2>&1); then
        tail -60 "$WORK/$name.log"
        echo "window $name: tests FAILED on $package $version"
        return 1
    fi
    echo "window $name: $(tail -1 "$WORK/$name.log" | tr -d '=') on $package $version," \
        "$((SECONDS - start)) s in all"
}

failed=0
for window in "${WINDOWS[@]}"; do
    IFS='|' read -r name extra requirement upgrade tests <<< "$window"
    if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
    # shellcheck disable=SC2086  # the tests are words
    run_window "$name" "$extra" "$requirement" "$upgrade" $tests || failed=1
done
echo "dependency windows: $((SECONDS - start_all)) s"
exit $failed
