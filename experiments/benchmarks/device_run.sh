#!/usr/bin/env bash
# The prepared GPU session of issue 6: the train-step benchmark matrix next to the PyTorch peer,
# then a wall-clock-budget SRResNet training evaluated on Set5/Set14/BSD100. Results go to $OUT.
#
# The device machine has jax, flax, optax, orbax-checkpoint, numpy, pillow, absl-py, tensorboard,
# h5py and torch, but no ml-collections and no network. Prepare, once, here in the repository root
# (.device/ is git-ignored; everything in it travels with `carry`, 64 MiB in all, ~60 MiB used):
#
#   mkdir -p .device/wheels .device/data .device/peer
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp -d .device/wheels ml-collections
#   cp -r ../shared/data/train ../shared/data/benchmarks .device/data/
#   cp ../shared/peer/torch_srgan_ref.py .device/peer/
#
# A command may run 10 minutes and the session has 15 minutes of device time (the machine's start,
# 1-2 minutes, included), so everything is one call; the training gets whatever time the benchmarks
# leave of TOTAL_SECONDS (each benchmark piece has its own cap, so at least ~4 minutes remain):
#
#   run(command="bash experiments/benchmarks/device_run.sh", carry=[".device"], timeout_s=600)
#
# `train` trains SRResNet-MSE (70 % of TRAIN_MINUTES) then SRGAN-MSE from it (30 %; antialiased D:
# `config.gan.discriminator_antialias`), writes both in
# the shipped format to $OUT/weights (copy them into srgan_jax/weights/ to ship them), and the model
# card's table and picture to $OUT/card.md and $OUT/comparison.png.
# `bench` or `train` as the argument runs one half (train then uses TRAIN_MINUTES). Environment:
#   TOTAL_SECONDS   the whole run's target length for `all` (default 560)
#   TRAIN_MINUTES   training budget of `train`, both phases, compilation included (default 6.5)
#   TRAIN_DTYPE     compute dtype of the budget training (default bfloat16)
#   QUICK=1         tiny sizes everywhere: proves the script on a CPU in a few minutes
#   PYTHON          interpreter with jax (default python3; on the GPU machine it also has torch)
#   PEER_PYTHON     interpreter with torch for the peer (default $PYTHON; skipped without torch)
set -uo pipefail

MODE=${1:-all}
case "$MODE" in bench|train|all) ;; *) echo "usage: $0 [bench|train|all]" >&2; exit 2 ;; esac
: "${OUT:?set OUT to the folder for results}"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
PYTHON=${PYTHON:-python3}
PEER_PYTHON=${PEER_PYTHON:-$PYTHON}
QUICK=${QUICK:-0}
TOTAL_SECONDS=${TOTAL_SECONDS:-560}
TRAIN_MINUTES=${TRAIN_MINUTES:-6.5}
TRAIN_DTYPE=${TRAIN_DTYPE:-bfloat16}
DATA=${DATA:-.device/data}
PEER=${PEER:-.device/peer/torch_srgan_ref.py}
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

log() { echo "[device_run $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/device_run.log"; }

# capped SECONDS COMMAND...: COMMAND under `timeout` (4x longer with QUICK=1: a loaded CPU is slow).
capped() {
  local seconds=$(($1 * (QUICK == 1 ? 4 : 1))) status
  shift
  timeout "$seconds" "$@"
  status=$?
  ((status == 0)) || log "$(basename "$2") stopped with status $status (124: its ${seconds} s cap)"
  return $status
}

install_wheels() {
  if "$PYTHON" -c "import ml_collections" 2>/dev/null; then return; fi
  ls .device/wheels/*.whl >/dev/null 2>&1 || { log "no ml_collections and no .device/wheels"; exit 1; }
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .device/wheels/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
}

bench() {
  local jax_args=(--iters 30 --warmup 3) peer_args=(--steps 20 --warmup 5) batches=16,64
  local peer_amps=bf16,none ks=1,4,16 pipeline_args=(--steps 300 --num-workers 1,2,4,8,12)
  if [[ $QUICK == 1 ]]; then
    # --quick: batch 4, bf16 (a tiny model: the tables only prove the plumbing)
    jax_args=(--quick); peer_args=(--steps 1 --warmup 1 --hr-size 32); batches=4
    peer_amps=bf16; ks=1,4; pipeline_args=(--steps 5 --num-workers 1)
  fi
  log "devices: $("$PYTHON" -c 'import jax; print(jax.devices())')"
  command -v nvidia-smi >/dev/null && nvidia-smi -L | tee -a "$OUT/device_run.log"
  # The issue-16 sweep, bf16: the SRGAN step at K steps per call x batch x where LR is made
  # (with XLA's compiled memory per configuration); the SRResNet step at K = 1 and the largest K.
  log "JAX SRGAN step sweep: bf16, batch $batches, K $ks, LR on host and device"
  capped 300 "$PYTHON" experiments/benchmarks/train_step.py "${jax_args[@]}" --steps gan \
    --dtypes bfloat16 --batch-sizes "$batches" --steps-per-call "$ks" --degradation host,device \
    --jsonl "$OUT/jax.jsonl" >>"$OUT/device_run.log" 2>&1
  log "JAX SRResNet step: bf16, batch $batches, K 1 and ${ks##*,}, LR on the device"
  capped 90 "$PYTHON" experiments/benchmarks/train_step.py "${jax_args[@]}" --steps pretrain \
    --dtypes bfloat16 --batch-sizes "$batches" --steps-per-call "1,${ks##*,}" \
    --degradation device --jsonl "$OUT/jax.jsonl" >>"$OUT/device_run.log" 2>&1
  log "input pipeline: crops/s by workers (96x96, x4, LR on host and device)"
  capped 60 "$PYTHON" experiments/benchmarks/input_pipeline.py "${pipeline_args[@]}" \
    --folder "$DATA/train/T91" 2>&1 | grep -v Warning | tee "$OUT/input_pipeline.txt" \
    >>"$OUT/device_run.log"
  if "$PEER_PYTHON" -c "import torch" 2>/dev/null && [[ -f $PEER ]]; then
    local device mode=default
    device=$("$PEER_PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
    [[ $device == cuda ]] && mode=reduce-overhead  # CUDA graphs: the peer's best on the H100
    log "PyTorch peer on $device: eager, channels-last, $peer_amps"
    capped 60 "$PEER_PYTHON" "$PEER" --device "$device" --mode srgan,srresnet --batch "$batches" \
      --amp "$peer_amps" --channels-last "${peer_args[@]}" >>"$OUT/peer.jsonl" 2>>"$OUT/device_run.log"
    log "PyTorch peer: torch.compile $mode, ${peer_amps%%,*}, channels-last, batch ${batches%%,*}"
    capped 120 "$PEER_PYTHON" "$PEER" --device "$device" --mode srgan,srresnet \
      --batch "${batches%%,*}" --amp "${peer_amps%%,*}" --channels-last --compile --compile-mode "$mode" \
      "${peer_args[@]}" >>"$OUT/peer.jsonl" 2>>"$OUT/device_run.log"
  else
    log "no torch (or no $PEER): peer skipped"
  fi
  local peer=()
  [[ -s $OUT/peer.jsonl ]] && peer=(--peer-jsonl "$OUT/peer.jsonl")
  "$PYTHON" experiments/benchmarks/train_step.py --rows-from "$OUT/jax.jsonl" "${peer[@]}" \
    | tee "$OUT/bench.md"
}

train() {
  local config=srgan_jax/configs/srgan_mse.py workers=12 crops=(--crop Set14/comic.png:80,20
    --crop Set14/baboon.png:200,180 --crop BSD100/148026.png:150,200)
  # The antialiased D: the stock one grows a 4x4 grid within a few hundred updates, this one
  # later (RESULTS.md)
  local extra=(--config.dtype="$TRAIN_DTYPE" --config.gan.discriminator_antialias=True)
  local benchmarks=Set5,Set14,BSD100 sets=Set5,Set14,BSD100
  # 70 % of the budget to SRResNet-MSE, the rest to SRGAN-MSE started from it
  local pretrain gan
  pretrain=$(awk -v m="$TRAIN_MINUTES" 'BEGIN { print 0.7 * m }')
  gan=$(awk -v m="$TRAIN_MINUTES" 'BEGIN { print 0.3 * m }')
  if [[ $QUICK == 1 ]]; then
    config=srgan_jax/configs/test.py; pretrain=0.3; gan=0.2; workers=1; benchmarks=Set5
    sets=Set5; crops=(--crop Set5/baby.png:100,100 --crop_size 32)
  fi
  log "budget training: $pretrain min of SRResNet-MSE, then $gan min of SRGAN-MSE ($config, $TRAIN_DTYPE)"
  local workdir=/tmp/srgan_budget
  rm -rf "$workdir"
  "$PYTHON" experiments/budget_training.py --workdir "$workdir" --config "$config" \
    --data_dir "$DATA" --pretrain_minutes "$pretrain" --gan_minutes "$gan" \
    --benchmarks "$benchmarks" --ship_dir "$OUT/weights" \
    --config.data.num_workers="$workers" --config.data.prefetch=4 --config.log_every=500 \
    --config.eval_every=1000000000 --config.sample_every=1000000000 \
    --config.checkpoint_every=1000000000 "${extra[@]}" 2>&1 | tee "$OUT/train.log"
  cp "$workdir"/results.md "$workdir"/results.json "$OUT/" || log "budget training wrote no results"
  # The card's table with texture and grid energy, and the bicubic | SRResNet | SRGAN | HR picture
  local scale models=()
  for json in "$OUT"/weights/srresnet_mse_x*.json "$OUT"/weights/srgan_mse_x*.json; do
    [[ -f $json ]] && models+=(--model "$(basename "$json" .json)=${json%.json}.msgpack")
  done
  scale=$("$PYTHON" -c "import json,sys; print(json.load(open(sys.argv[1]))['scale'])" "$json")
  "$PYTHON" experiments/model_card.py "${models[@]}" --data_dir "$DATA/benchmarks" --sets "$sets" \
    --scale "$scale" "${crops[@]}" --picture "$OUT/comparison.png" --json "$OUT/card.json" \
    | tee "$OUT/card.md" || log "model card failed"
}

install_wheels
[[ $MODE == bench || $MODE == all ]] && bench
if [[ $MODE == all && $QUICK != 1 ]]; then
  # What is left of TOTAL_SECONDS, less ~80 s for start-up, evaluation and export.
  TRAIN_MINUTES=$(awk -v left=$((TOTAL_SECONDS - SECONDS - 80)) 'BEGIN { print (left > 60 ? left : 60) / 60 }')
fi
[[ $MODE == train || $MODE == all ]] && train
log "done ($MODE)"
