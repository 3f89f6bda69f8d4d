#!/usr/bin/env bash
# Reproduce the embedded DepthVLM model (depthvlm_ros/embedded/) from nothing but this repo.
#
#   scripts/train_embedded.sh [RUN_DIR]          # default runs/embedded
#
# 1. renders the synthetic DepthVLM-Bench (indoor + outdoor) in world WORLD (default: the
#    generator's EMBEDDED_WORLD, the world the shipped model was trained in; v1: generator 1.0;
#    v2: real-world sizes from random camera poses; mount: v2's rooms and streets from one
#    robot's fixed camera mount; robot: mount through that robot's one camera; each measured
#    in the README): a training split (seed 1) and a held-out split with new seeds (seed 7001) that
#    training never sees, plus the generator 1.0 held-out split (heldout_v1) for comparison;
# 2. trains from random weights with `depthvlm train` under torchrun (DDP; one CPU process by
#    default, NPROC=N for more): stage 0 (whole model, depth + text; needed because there is
#    no pretrained backbone), then the paper's stage 1 (head only, SILog) and stage 2 (vision
#    frozen; LLM + lm_head + head with LM + depth loss);
# 3. leaves RUN_DIR/final (a model folder loadable with model_path), RUN_DIR/best (best
#    held-out score), train_log.jsonl and loss.png.
# PHASES=2 (or PHASE2=1) adds a continuation: STAGES2 more steps from RUN_DIR/best with a
# warm restart of the learning rate, in RUN_DIR/phase2, on the training split plus N_MORE more
# images per kind (seed 2, rendered at ~25 images/s on 2 cores) and with the text mix
# TEXT_MIX2. PHASES=3 goes on from phase 2's best checkpoint with STAGES3 in RUN_DIR/phase3 on
# the same images and text mix; PHASES=N chains N phases, each from the best checkpoint of the
# one before. Phase GROW_AT (4) first deepens that checkpoint (GROW: vision=8,text=8, the same
# outputs to start with). PHASES=6 is how the shipped model was made: RUN_DIR/phase6/best is
# the shipped folder (copy it to depthvlm_ros/embedded to ship). RUN_DIR/training.png draws all
# phases.
# The training split carries the generator's scene-kind and named-object questions; the text
# mix teaches their answers and the grounding reply (box) of each named object.
# SILOG_LAMBDA=0 (full scale penalty) and ARCH=embedded_wide (a 1.5x backbone) are levers
# measured in the README; neither is the shipped recipe.
# PATCH=8 trains a model with an 8-pixel ViT patch (16-pixel LLM tokens: four times the token
# grid of the same image, measured in the README against the shipped 32-pixel-token model).
# FROM=FOLDER skips phase 1: the continuations (PHASES >= 2) start from that model folder
# instead (e.g. depthvlm_ros/embedded; scripts/train_embedded_gpu.sh uses it on a GPU).
# BATCH, WORKERS (data-loading processes), RENDER_WORKERS, DEVICE (auto, cpu, cuda),
# EVAL_EVERY2 (steps between held-out evaluations in the continuations) and EVAL_IMAGES
# (held-out images per evaluation) size a run for the machine; the defaults are the recipe's.
# It is restartable: rerunning resumes each phase from its latest checkpoint (--resume auto).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/embedded}
NPROC=${NPROC:-1}
N_TRAIN=${N_TRAIN:-800}      # images per kind in the training split
N_EVAL=${N_EVAL:-30}         # images per kind in the held-out split
STAGES=${STAGES:-0:1400:6e-4,1:120:3e-4,2:380:1.5e-4}
STAGES2=${STAGES2:-0:2200:4e-4,1:100:2e-4,2:300:1e-4}
PHASES=${PHASES:-1}           # training phases; 2 or more: continuations (see above)
if [ "${PHASE2:-0}" = 1 ] && [ "$PHASES" -lt 2 ]; then PHASES=2; fi
STAGES3=${STAGES3:-0:1900:3e-4,1:100:1.5e-4,2:200:8e-5}  # phases 3 to SHORT_AT - 1
# From phase SHORT_AT on, a phase is half as long (STAGES_SHORT, the same decay in 1100
# steps): half a phase from phase 5 got nearly what phase 6's 2200 steps did, but phase 7 run
# so after the shipped phase 6 gained nothing (measured in the README; not shipped).
SHORT_AT=${SHORT_AT:-7}
STAGES_SHORT=${STAGES_SHORT:-0:900:3e-4,1:50:1.5e-4,2:150:8e-5}
# From phase SELECT_AT on (0: never, the shipped recipe), the training-only grounding signals
# of core/train/locate.py are on (SELECT_ARGS: attention selection on the named object plus the
# position readouts), for STAGES_SELECT steps; measured in the README, not shipped.
SELECT_AT=${SELECT_AT:-0}
SELECT_ARGS=${SELECT_ARGS:---select-weight 1 --select-layer -3 --locate-weight 4}
STAGES_SELECT=${STAGES_SELECT:-0:900:3e-4,1:50:1.5e-4,2:150:8e-5}
# Phase GROW_AT starts from a deeper copy of the checkpoint before it (same outputs; see
# depthvlm_ros/core/train/grow.py): GROW vision blocks and text layers.
GROW_AT=${GROW_AT:-4}
GROW=${GROW:-vision=8,text=8}
N_MORE=${N_MORE:-6400}       # phase 2: more training images per kind (seed 2)
EVAL_EVERY=${EVAL_EVERY:-450}  # steps between held-out evaluations (phase 1)
PY=${PYTHON:-python}
# Synthetic world of the training and held-out splits; the default is the shipped model's.
WORLD=${WORLD:-$("$PY" -c 'from depthvlm_ros.core.bench.synthetic import EMBEDDED_WORLD as w; print(w)')}
PATCH=${PATCH:-16}           # ViT patch of a model trained from scratch (8: 16-pixel tokens)
ARCH=${ARCH:-embedded}       # sizes (depthvlm_ros.core.train.config.ARCHITECTURES)
SILOG_LAMBDA=${SILOG_LAMBDA:-0.5}  # SILog variance weight (0: a wrong global scale costs in full)
DATA=${DATA:-$RUN/data}      # rendered splits (several runs of one world may share them)
# Probability of a random-crop batch. A crop keeps fx but moves the principal point, and in a
# fixed-mount world the horizon's row is a scale cue: world mount has none by default; the
# shipped robot model was trained with 0.3 (crops in robot not yet compared against none).
if [ "$WORLD" = mount ]; then CROP=${CROP:-0}; else CROP=${CROP:-0.3}; fi
# Text targets: depth facts, point and marker questions, the data's own questions (depth-map,
# scene-kind and named-object ones) and the grounding reply for named objects.
TEXT_MIX=${TEXT_MIX:-dense=1,point=1,marker=2,qa=2,ground=4}
TEXT_MIX2=${TEXT_MIX2:-dense=1,point=1,marker=2,qa=2,ground=8}  # phase 2: twice the grounding
# Token budget: 128 tokens of 32 pixels, the same image area in tokens of the chosen size.
MAX_TOKENS=${MAX_TOKENS:-$(( 128 * (32 / (2 * PATCH)) * (32 / (2 * PATCH)) ))}
THREADS=${THREADS:-2}        # torch threads per process (1 on a shared machine)
NICE=${NICE:-10}
BATCH=${BATCH:-8}
WORKERS=${WORKERS:-1}
RENDER_WORKERS=${RENDER_WORKERS:-2}
DEVICE=${DEVICE:-auto}
EVAL_EVERY2=${EVAL_EVERY2:-550}
EVAL_IMAGES=${EVAL_IMAGES:-60}
FROM=${FROM:-}
if [ -n "$FROM" ] && [ "$PHASES" -lt 2 ]; then
  echo "train_embedded.sh: FROM=$FROM needs PHASES >= 2 (phase 1 is what FROM replaces)" >&2
  exit 2
fi
mkdir -p "$RUN"

gen() {  # gen DIR N SEED WORLD
  if [ ! -f "$1/synthetic.jsonl" ]; then
    "$PY" -c "from depthvlm_ros.core.bench.synthetic import write_benchmark as w; \
w('$1', $2, $2, seed=$3, progress=False, workers=$RENDER_WORKERS, world='$4')"
  fi
}
gen "$DATA/train" "$N_TRAIN" 1 "$WORLD"
gen "$DATA/heldout" "$N_EVAL" 7001 "$WORLD"
gen "$DATA/heldout_v1" "$N_EVAL" 7001 v1
TRAIN_FILES=("$DATA/train/synthetic.jsonl")
CONTINUATION_FILES=("${TRAIN_FILES[@]}")  # phases 2 and later
if [ "$PHASES" -ge 2 ] && [ "$N_MORE" -gt 0 ]; then
  gen "$DATA/more" "$N_MORE" 2 "$WORLD"
  CONTINUATION_FILES+=("$DATA/more/synthetic.jsonl")
fi

# canonical_fx 256: a 640x480 image with fx 525 becomes 320x224 (70 tokens of 32 pixels, 280
# of 16); the token budget (128 tokens of 32 pixels, or the same area in smaller ones) bounds
# the widest views (their depth is rescaled by depth_scale, so it stays metric).
train() {  # train OUT INIT STAGES EVAL_EVERY SEED TEXT_MIX TRAIN_JSONL... -- [extra args]
  local out=$1 init=$2 stages=$3 every=$4 seed=$5 mix=$6
  shift 6
  local files=()
  while [ "$1" != "--" ]; do files+=("$1"); shift; done
  shift
  nice -n "$NICE" "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" \
    -m depthvlm_ros.cli train \
    --train "${files[@]}" --eval "$DATA/heldout/synthetic.jsonl" \
    --out "$out" --init "$init" --canonical-fx 256 --max-image-tokens "$MAX_TOKENS" \
    --stages "$stages" --warmup 100 --batch-size "$BATCH" --grad-accum 1 --depth-weight 1.0 \
    --lm-weight 0.5 --silog-lambda "$SILOG_LAMBDA" --hflip 0.5 --jitter 0.2 --crop "$CROP" --text-mix "$mix" \
    --workers "$WORKERS" --threads "$THREADS" --device "$DEVICE" --eval-every "$every" \
    --ckpt-every 50 --log-every 10 --eval-images "$EVAL_IMAGES" --eval-markers 2 --seed "$seed" \
    --resume auto "$@"
}
LOGS=()
if [ -z "$FROM" ]; then
  train "$RUN" scratch "$STAGES" "$EVAL_EVERY" 0 "$TEXT_MIX" "${TRAIN_FILES[@]}" -- \
    --arch "$ARCH" --patch-size "$PATCH"
  LOGS=("$RUN/train_log.jsonl")
fi
if [ "$PHASES" -ge 2 ]; then
  INITS=()   # the checkpoint each continuation starts from
  init=${FROM:-$RUN/best}
  for ((k = 2; k <= PHASES; k++)); do
    stages=$STAGES3; [ "$k" = 2 ] && stages=$STAGES2
    [ "$k" -ge "$SHORT_AT" ] && stages=$STAGES_SHORT
    extra=(); [ "$k" = "$GROW_AT" ] && [ -n "$GROW" ] && extra=(--grow "$GROW")
    if [ "$SELECT_AT" -gt 0 ] && [ "$k" -ge "$SELECT_AT" ]; then
      stages=$STAGES_SELECT
      read -r -a select_args <<< "$SELECT_ARGS"
      extra+=("${select_args[@]}")
    fi
    train "$RUN/phase$k" "$init" "$stages" "$EVAL_EVERY2" $((k - 1)) "$TEXT_MIX2" "${CONTINUATION_FILES[@]}" -- \
      "${extra[@]}"
    LOGS+=("$RUN/phase$k/train_log.jsonl")
    INITS+=("$init")
    init="$RUN/phase$k/best"
  done
  # All phases on one step axis (the README figure), each drawn from the step it branched
  # from (the step of the checkpoint it started from); FROM's own training is not drawn.
  if [ -n "$FROM" ]; then INITS=("${INITS[@]:1}"); fi
  "$PY" - "$RUN" "${INITS[@]}" -- "${LOGS[@]}" <<'PYEOF'
import json, sys
from pathlib import Path
from depthvlm_ros.core.train.loop import plot_losses
run, args = Path(sys.argv[1]), sys.argv[2:]
inits, logs = args[:args.index("--")], [Path(p) for p in args[args.index("--") + 1:]]
branches = [json.loads((Path(i) / "depthvlm_meta.json").read_text())["steps"] for i in inits]
plot_losses(logs, run / "training.png", branches)
PYEOF
fi
