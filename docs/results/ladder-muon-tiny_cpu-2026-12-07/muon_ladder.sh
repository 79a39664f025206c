#!/usr/bin/env bash
# Issue 30 item 5: AdamW vs Muon on the tiny_cpu ladder. Decided before running: probe
# optimizer.muon_lr in {0.01, 0.02, 0.04} at rung 0, seed 1 (AdamW's 5e-3 was picked the same
# way by the ladder's author); the best val/loss is fixed for the ladder; then rungs 0-3 x
# {adamw, muon} x seeds {1, 2}; attnlab-compare --ladder --baseline optimizer=adamw.
set -u
cd /work/wt-perf
export ATTNLAB_DATA_DIR=/work/shared/data WANDB_MODE=offline WANDB_SILENT=true HF_HUB_OFFLINE=1
T=.venv/bin/attnlab-train
start=$(date -u +%s); echo "start $(date -u +%FT%TZ)"; uptime
rm -rf logs/muon_probe logs/muon_ladder
$T -m ladder=tiny_cpu ladder.rung=0 optimizer=muon optimizer.muon_lr=0.01,0.02,0.04 seed=1 \
   print_config=false hydra.sweep.dir=logs/muon_probe > logs/muon_probe.log 2>&1
best=$(.venv/bin/python - <<'PY'
import json, glob, yaml, pathlib
rows = []
for m in glob.glob("logs/muon_probe/*/metrics.json"):
    d = pathlib.Path(m).parent
    ov = dict(o.split("=", 1) for o in yaml.safe_load(open(d / ".hydra/overrides.yaml")))
    rows.append((json.load(open(m))["metrics"]["val/loss"], ov["optimizer.muon_lr"]))
for r in sorted(rows): print("probe", r, file=__import__("sys").stderr)
print(min(rows)[1])
PY
)
echo "muon_lr picked: $best"; echo "probe done $(( $(date -u +%s) - start )) s"
$T -m ladder=tiny_cpu ladder.rung=0,1,2,3 optimizer=adamw seed=1,2 print_config=false \
   hydra.sweep.dir=logs/muon_ladder/adamw > logs/muon_ladder_adamw.log 2>&1
echo "adamw done $(( $(date -u +%s) - start )) s"; uptime
$T -m ladder=tiny_cpu ladder.rung=0,1,2,3 optimizer=muon optimizer.muon_lr=$best seed=1,2 \
   print_config=false hydra.sweep.dir=logs/muon_ladder/muon > logs/muon_ladder_muon.log 2>&1
echo "muon done $(( $(date -u +%s) - start )) s"; uptime
.venv/bin/attnlab-compare --ladder logs/muon_ladder --baseline "optimizer=adamw" --budget 1e13 \
   > logs/muon_ladder_compare.log 2>&1
echo "compare exit $?; end $(date -u +%FT%TZ), $(( $(date -u +%s) - start )) s"
