#!/usr/bin/env bash
# GPU check of the native SparseWindowAttention kernel on a machine with CUDA + CMake (no
# TensorRT, no ONNX Runtime headers, no network needed): builds the kernels for the local GPU
# only and runs swa_gpu_check (CUDA vs CPU kernel, graph capture, timings vs floors). < 5 min.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SPAN_GPU_BUILD_DIR:-$repo/build/gpu-check}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[[ -n ${CUDACXX:-} ]] || export CUDACXX=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)

cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSPAN_WITH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=native -DSPAN_BUILD_ORT_OP=OFF -DSPAN_BUILD_TRT_PLUGIN=OFF
cmake --build "$build" --target swa_gpu_check --parallel "$(nproc)"
"$build/bin/swa_gpu_check"
