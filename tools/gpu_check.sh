#!/usr/bin/env bash
# GPU check of the native SparseWindowAttention kernel on a machine with CUDA + CMake >= 3.22 (no
# TensorRT, no ONNX Runtime headers, no network needed): builds the kernels for the local GPU
# only and runs swa_gpu_check (CUDA vs CPU kernel, graph capture, timings vs floors). < 5 min.
# The GPU's architecture comes from nvidia-smi's compute_cap (CMake 3.22 has no
# CMAKE_CUDA_ARCHITECTURES=native); SPAN_CUDA_ARCH=87 (say) overrides it, e.g. where nvidia-smi
# cannot report it.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SPAN_GPU_BUILD_DIR:-$repo/build/gpu-check}
die() { echo "gpu_check: error: $*" >&2; exit 1; }

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
arch=${SPAN_CUDA_ARCH:-}
if [[ -z $arch ]]; then
    # "9.0" -> 90 (first GPU; the check runs on device 0)
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d '[:space:]') || cap=
    [[ $cap =~ ^[0-9]+\.[0-9]+$ ]] ||
        die "cannot read the GPU's compute capability from nvidia-smi (got '${cap}'); set SPAN_CUDA_ARCH, e.g. SPAN_CUDA_ARCH=87 for Jetson Orin"
    arch=$cap
fi
arch=${arch/./}  # 8.7 and 87 alike
[[ $arch =~ ^[0-9]+$ ]] || die "SPAN_CUDA_ARCH='${SPAN_CUDA_ARCH:-$arch}': expected a compute capability such as 87 or 90"
echo "gpu_check: building for sm_$arch"
[[ -n ${CUDACXX:-} ]] || export CUDACXX=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)

cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSPAN_WITH_CUDA=ON \
    "-DCMAKE_CUDA_ARCHITECTURES=$arch" -DSPAN_BUILD_ORT_OP=OFF -DSPAN_BUILD_TRT_PLUGIN=OFF \
    -DSPAN_BUILD_SAMPLES=OFF -DSPAN_SANITIZE_CHECK=OFF
cmake --build "$build" --target swa_gpu_check --parallel "$(nproc)"
"$build/bin/swa_gpu_check"
