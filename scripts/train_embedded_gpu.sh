#!/usr/bin/env bash
# Continue the embedded model on one CUDA GPU for a fixed time (not part of CI).
#
#   bash scripts/train_embedded_gpu.sh [RUN_DIR]       # default runs/embedded_gpu
#
# The embedded model underfits on 2 CPU cores (README, "Embedded model"): more of the same
# steps bought less each time, and the next levers are capacity and time. This is that run for
# a machine with a GPU and many cores, built from scripts/train_embedded.sh so that it keeps
# the recipe's data, augmentation, losses and evaluation:
# 1. renders the recipe's splits (train, held-out, more) with RENDER_WORKERS processes
#    (default: every core) into RUN_DIR/data, unless DATA points at rendered ones;
# 2. times PROBE_STEPS steps of the continuation at BATCH images a step (RUN_DIR/probe);
# 3. runs one continuation from FROM (default: the shipped model) whose stages keep the
#    proportions of STAGES (default: the half-length phase, stage 0 / 1 / 2) and whose step
#    count fills BUDGET_S seconds at the probed pace, with EVALS held-out evaluations;
# 4. leaves RUN_DIR/phase2/best (the best held-out checkpoint by the training loop's score),
#    its train_log.jsonl and loss.png, and prints the final evaluation.
# Score the result on the CPU machine with scripts/training_eval.py and `depthvlm bench`
# before shipping it (it must also keep the node's latency budget: same architecture, so it
# does). DEVICE=cpu runs the same steps on a CPU (a check of the plumbing, not a recipe).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/embedded_gpu}
PY=${PYTHON:-python3}
CORES=$(nproc)
export PYTHON=$PY
export FROM=${FROM:-depthvlm_ros/embedded}
export DEVICE=${DEVICE:-cuda}
export BATCH=${BATCH:-64}
export WORKERS=${WORKERS:-$(( CORES > 4 ? CORES - 4 : 1 ))}
export RENDER_WORKERS=${RENDER_WORKERS:-$CORES}
export THREADS=${THREADS:-4}
export NICE=${NICE:-0}
export DATA=${DATA:-$RUN/data}
export WORLD=${WORLD:-robot}
export PHASES=2
BUDGET_S=${BUDGET_S:-240}        # seconds of training steps (evaluations come on top)
EVALS=${EVALS:-3}                # held-out evaluations in the run (the last at its end)
PROBE_STEPS=${PROBE_STEPS:-30}   # steps timed before the run is sized
STAGES=${STAGES:-0:900:3e-4,1:50:1.5e-4,2:150:8e-5}

if [ "$DEVICE" = cuda ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "train_embedded_gpu.sh: no CUDA device visible to $PY (DEVICE=cpu checks the plumbing)" >&2
  exit 2
fi
mkdir -p "$RUN"
t0=$(date +%s)

# Rendering and probing: the probe's evaluation is cut to two images so that it times steps.
STAGES2="0:$PROBE_STEPS:1e-5" EVAL_EVERY2=$(( PROBE_STEPS + 1 )) EVAL_IMAGES=2 \
  bash scripts/train_embedded.sh "$RUN/probe" > "$RUN/probe.log" 2>&1 \
  || { tail -30 "$RUN/probe.log" >&2; exit 1; }
t1=$(date +%s)
# An assignment, not a process substitution: a failed sizing stops the script (set -e)
# instead of leaving STAGES2 empty, which train_embedded.sh would fill with its own default.
sizing=$("$PY" - "$RUN/probe/phase2/train_log.jsonl" "$STAGES" "$BUDGET_S" "$EVALS" <<'PYEOF'
import sys
from pathlib import Path
from depthvlm_ros.core.train.config import format_stages, parse_stages, scale_stages
from depthvlm_ros.core.train.plots import seconds_per_step
log, stages, budget, evals = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
pace = seconds_per_step(log)
scaled = scale_stages(parse_stages(stages), max(3, int(budget / pace)))
total = sum(s.steps for s in scaled)
print(f"{pace:.4f} {format_stages(scaled)} {max(1, -(-total // max(1, evals)))}")
PYEOF
)
read -r SEC_PER_STEP STAGES2 EVAL_EVERY2 <<< "$sizing"
echo "rendering + probe: $(( t1 - t0 )) s; $SEC_PER_STEP s a step at batch $BATCH on $DEVICE"
echo "run: stages $STAGES2; held-out evaluation every $EVAL_EVERY2 steps"
export STAGES2 EVAL_EVERY2
bash scripts/train_embedded.sh "$RUN"
t2=$(date +%s)
echo "run: $(( t2 - t1 )) s"
"$PY" - "$RUN/phase2/best" <<'PYEOF'
import json, sys
from pathlib import Path
meta = json.loads((Path(sys.argv[1]) / "depthvlm_meta.json").read_text())
print(f"best checkpoint: step {meta['steps']}")
for kind, d in meta.get("metrics_detail", {}).get("depth", {}).items():
    print(f"  {kind}: delta1 {d['delta1']:.3f}  AbsRel {d['abs_rel']:.3f}  "
          f"scale-aligned delta1 {d['delta1_scale_aligned']:.3f}")
m = meta.get("metrics", {})
print("  " + "  ".join(f"{k} {m[k]:.3f}" for k in ("answer_accuracy", "scene_kind_accuracy",
                                                   "pointing_accuracy") if k in m))
PYEOF
