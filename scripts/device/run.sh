#!/bin/bash
# Runs on the device machine, in the repo root: NullSwap trainings side by side on one GPU, each stopping at a checkpoint
# after SECS seconds (train.max_seconds), then their run folders packed into $OUT.
#
#   bash .gpuN/run.sh SECS NAME=CONFIG[@RESUME_CKPT] [NAME=CONFIG[@RESUME_CKPT] ...] [-- KEY=VALUE ...]
#
# NAME=CONFIG trains CONFIG into runs/gpu-NAME; @RESUME_CKPT (a ckpt/last folder of the repo, e.g.
# training/nullswap-cpu-default/ckpt/last) continues that run's state. KEY=VALUE after -- are config overrides for all.
# The payload (scripts/device/bundle.py): this script's own folder is merged into /tmp/gpu, where the earlier calls of
# the same warm machine copied theirs; weights/, py/, whl/ and train-crops.npz must all be there.
set -u
SECS=$1; shift
SPECS=(); EXTRA=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; EXTRA=("$@"); break; fi
  SPECS+=("$1"); shift
done
OUT=${OUT:-/tmp/nullswap-device-out}; mkdir -p "$OUT"; T0=$(date +%s)
G=${GPU_PAYLOAD:-/tmp/gpu}; mkdir -p "$G"; cp -r "$(dirname "$0")"/. "$G"/
missing=(); for p in weights py whl train-crops.npz; do [ -e "$G/$p" ] || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "FATAL: $G lacks ${missing[*]}: make the earlier calls (cp -r .gpuK/. $G/) on the same warm machine first"; exit 3
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$G"/whl/*.whl || exit 4
export PYTHONPATH=/tmp/site:$G/py:$PWD/src:${EXTRA_PYTHONPATH:-}
export NULLSWAP_WEIGHTS=$G/weights NULLSWAP_HOME=/tmp/nshome PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# GPU defaults: batch 32, every recognizer and ST-LPIPS on every image each step, frequent checkpoints, no validation
# (the unseen recognizers' weights do not travel; validate the checkpoints at home).
COMMON=(train.accelerator=${ACCEL:-cuda} train.devices=1 train.precision=32-true train.threads=4 train.batch_size=32
        train.eval_every=0 train.checkpoint_every=50 train.log_every=50 loss.perceptual_images=0
        loss.recognizers_per_step=0 "data.packs={train: $G/train-crops.npz}")
LEFT=$(( SECS - ($(date +%s) - T0) )); [ "$LEFT" -lt 0 ] && LEFT=0
for spec in "${SPECS[@]}"; do
  name=${spec%%=*}; rest=${spec#*=}; cfg=${rest%%@*}; ckpt=""; [ "$rest" != "$cfg" ] && ckpt=${rest#*@}
  (
    resume=()
    if [ -n "$ckpt" ]; then mkdir -p "runs/gpu-$name/ckpt" && cp -r "$ckpt" "runs/gpu-$name/ckpt/last"; resume=(--resume); fi
    sets=(); for kv in "${COMMON[@]}" "train.max_seconds=$LEFT" "${EXTRA[@]}"; do sets+=(--set "$kv"); done
    python3 -m nullswap train --config "$cfg" --out "runs/gpu-$name" "${resume[@]}" "${sets[@]}" > "$OUT/$name.log" 2>&1
    echo "$name exit $? at $(( $(date +%s) - T0 ))s"
  ) &
done
wait
for spec in "${SPECS[@]}"; do
  name=${spec%%=*}
  [ -d "runs/gpu-$name" ] && tar czf "$OUT/gpu-$name.tgz" -C runs "gpu-$name"
  grep -E "resumed|max_seconds|Error" "$OUT/$name.log" | tail -3
done
ls -la "$OUT"; echo "total $(( $(date +%s) - T0 ))s"
