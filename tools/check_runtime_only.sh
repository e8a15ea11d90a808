#!/usr/bin/env bash
# The runtime without torch, as a scanner or a Jetson installs it: a fresh virtual environment
# with `pip install -e .` (no extras, no export side: ONNX Runtime missing must be one clear line),
# then `pip install -e ".[cpu]"` (the CPU ONNX Runtime), the native libraries already built
# (tools/build_native.sh). It runs the bundled demos (classification and segmentation), then
# `predict --backend ort` on a plugin ONNX and `predict --model DIR` on a cpu-fp32 model directory,
# both exported *elsewhere* (by the caller's environment, which has the export side), and compares
# the logits with the official golden output.
#   usage: bash tools/check_runtime_only.sh [FIXTURE_DIR]     (default ../shared/fixtures/cls_default_r50)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case_dir=${1:-${SPAN_SHARED:-$repo/../shared}/fixtures/cls_default_r50}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$repo"

command -v span-deploy >/dev/null || { echo "check_runtime_only: run it from the full (export) environment" >&2; exit 1; }
span-deploy export --checkpoint "$case_dir/checkpoint.pt" --config "$case_dir/config.yaml" \
    -o "$work/model.onnx" --attention plugin
span-deploy export --checkpoint "$case_dir/checkpoint.pt" --config "$case_dir/config.yaml" \
    -o "$work/model-dir" --target cpu-fp32

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet -e .
if "$work/venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "check_runtime_only: torch is importable in the runtime-only environment" >&2; exit 1
fi
# No ONNX Runtime yet: one clear line that names the extras, exit 2, no traceback.
set +e
msg=$("$work/venv/bin/span-deploy" predict "$case_dir/slide.h5" --model "$work/model.onnx" 2>&1)
rc=$?
set -e
if [[ $rc -ne 2 || $msg != *"span-deploy[cpu]"* || $msg == *Traceback* ]]; then
    echo "check_runtime_only: without onnxruntime, predict gave rc=$rc: $msg" >&2; exit 1
fi
"$work/venv/bin/python" -m pip install --quiet -e ".[cpu]"
"$work/venv/bin/span-deploy" run samples/data/CMU-1-Small-Region.svs --model samples/demo/span.onnx \
    --output "$work/demo"
for f in result.json heatmap.png tiles.geojson CMU-1-Small-Region.h5 embedding.npy; do
    [[ -s $work/demo/CMU-1-Small-Region/$f ]] || { echo "check_runtime_only: demo wrote no $f" >&2; exit 1; }
done
"$work/venv/bin/span-deploy" run samples/data/CMU-1-Small-Region.svs --model samples/demo/segmentation/span.onnx \
    --encoder samples/demo/encoder.onnx --output "$work/seg" --no-progress
for f in result.json heatmap.png tiles.geojson regions.geojson CMU-1-Small-Region.h5; do
    [[ -s $work/seg/CMU-1-Small-Region/$f ]] || { echo "check_runtime_only: segmentation demo wrote no $f" >&2; exit 1; }
done
"$work/venv/bin/span-deploy" predict "$case_dir/slide.h5" --model "$work/model.onnx" --backend ort \
    -o "$work/pred.json"
"$work/venv/bin/span-deploy" predict "$case_dir/slide.h5" --model "$work/model-dir" -o "$work/pred-dir.json"
"$work/venv/bin/python" - "$work/pred.json" "$work/pred-dir.json" "$case_dir/expected.npz" <<'PY'
import json, sys
import numpy as np
want = np.load(sys.argv[3])["logits"].reshape(-1)
for what, f in (("predict --backend ort", sys.argv[1]), ("predict --model DIR (cpu-fp32)", sys.argv[2])):
    got = np.array(json.load(open(f))["logits"])
    d = float(np.abs(got - want).max())
    assert d < 1e-4, f"runtime-only {what}: logits differ from the golden by {d}"
    print(f"check_runtime_only: {what} without torch matches the golden (max |dlogit| {d:.2e})")
print("check_runtime_only: OK (no onnxruntime -> clear line; demos; ONNX and model directory vs golden)")
PY
