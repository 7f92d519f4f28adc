#!/usr/bin/env bash
# Train on a Runpod pod with a persistent volume, surviving restarts.
#
#   HF_TOKEN=hf_... HUB_CHECKPOINTS=USER/chatterbox-es-latam-run bash training/runpod/train.sh \
#       training/recipes/es_latam_lora.yaml [--any_recipe_field value ...]
#
# - installs (make install: system packages, .venv, locked dependencies);
# - puts checkpoints on the volume ($VOLUME/checkpoints); if that is empty (a new volume), pulls the newest
#   checkpoint from the Hub copy; training resumes from the newest complete checkpoint either way;
# - syncs the newest complete checkpoint to $HUB_CHECKPOINTS every $SYNC_EVERY seconds;
# - on SIGTERM (pod stop), the trainer writes a complete checkpoint and exits; it is synced before the script ends.
set -euo pipefail
cd "$(dirname "$0")/../.."

RECIPE=${1:?usage: train.sh RECIPE [--field value ...]}
shift
VOLUME=${VOLUME:-/workspace}
CHECKPOINTS=${CHECKPOINT_DIR:-$VOLUME/checkpoints}
SYNC_EVERY=${SYNC_EVERY:-600}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-accelerate_configs/runpod.yaml}
export HF_HOME=${HF_HOME:-$VOLUME/hf_home}   # model and dataset downloads survive restarts too

command -v nvidia-smi >/dev/null && nvidia-smi
make install

if [ -n "${HUB_CHECKPOINTS:-}" ]; then
  .venv/bin/python training/sync_checkpoints.py pull --repo_id "$HUB_CHECKPOINTS" --checkpoint_dir "$CHECKPOINTS"
  .venv/bin/python training/sync_checkpoints.py watch --repo_id "$HUB_CHECKPOINTS" \
      --checkpoint_dir "$CHECKPOINTS" --every "$SYNC_EVERY" &
  SYNC_PID=$!
fi

.venv/bin/accelerate launch --config_file "$ACCELERATE_CONFIG" training/run.py --config "$RECIPE" \
    --output_dir "$CHECKPOINTS" --resume latest "$@" &
TRAIN_PID=$!
trap 'kill -TERM $TRAIN_PID 2>/dev/null' TERM INT   # pass the pod's stop on: the trainer checkpoints, then exits
status=0
wait $TRAIN_PID || status=$?
if kill -0 $TRAIN_PID 2>/dev/null; then   # interrupted by the trap: wait for the checkpoint to be written
  status=0
  wait $TRAIN_PID || status=$?
fi

if [ -n "${HUB_CHECKPOINTS:-}" ]; then
  kill "$SYNC_PID" 2>/dev/null || true
  .venv/bin/python training/sync_checkpoints.py push --repo_id "$HUB_CHECKPOINTS" --checkpoint_dir "$CHECKPOINTS"
fi
exit $status
