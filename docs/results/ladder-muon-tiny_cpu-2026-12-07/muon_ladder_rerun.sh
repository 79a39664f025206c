#!/usr/bin/env bash
# adamw job #7 (rung 3, seed 2) failed at compose: the sweep's process predated the
# vocab_pad_for resolver that the config tree gained while it ran. The same job, alone.
cd /work/wt-perf
export ATTNLAB_DATA_DIR=/work/shared/data WANDB_MODE=offline WANDB_SILENT=true HF_HUB_OFFLINE=1
start=$(date -u +%s); echo "start $(date -u +%FT%TZ)"; uptime
.venv/bin/attnlab-train ladder=tiny_cpu ladder.rung=3 optimizer=adamw seed=2 print_config=false \
   hydra.run.dir=logs/muon_ladder/adamw_rerun/7 > logs/muon_ladder_adamw7.log 2>&1
echo "exit $?; $(( $(date -u +%s) - start )) s"; uptime
