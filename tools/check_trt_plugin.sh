#!/usr/bin/env bash
# Build and run the TensorRT plugin's host-side harnesses against one or more TensorRT header
# trees, with no TensorRT library and no GPU: for each INCLUDE_DIR (a folder with NvInferRuntime.h
# and NvInferVersion.h) it configures its own build dir, builds the shared and static plugin
# libraries and the two harnesses (tensorrt/tests/), runs them, and prints one PASS / FAIL line per
# TensorRT version. Exit status: non-zero when any version fails.
#
#   bash tools/check_trt_plugin.sh [INCLUDE_DIR ...]   (default: $TensorRT_INCLUDE_DIR)
#
# Headers: the public ones of NVIDIA's TensorRT repository are enough, e.g.
#   git clone --depth 1 -b v10.3.0 https://github.com/NVIDIA/TensorRT /tmp/trt/v10.3.0-src
#   bash tools/check_trt_plugin.sh /tmp/trt/v10.3.0-src/include
# (also tags such as v10.16 or v11.1; JetPack: /usr/include/aarch64-linux-gnu).
# Needs CMake >= 3.22, a C++17 compiler and nvcc (the plugin links the CUDA kernel). Only one CUDA
# architecture is compiled, SPAN_CUDA_ARCH (default 80), since nothing runs on a GPU here.
# Build dirs: $SPAN_TRT_CHECK_DIR/trt-<version> (default build/trt-check/); logs in each, check.log.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=${SPAN_TRT_CHECK_DIR:-$repo/build/trt-check}
arch=${SPAN_CUDA_ARCH:-80}

die() { echo "check_trt_plugin: error: $*" >&2; exit 2; }
[[ $# -gt 0 ]] || set -- ${TensorRT_INCLUDE_DIR:-}
[[ $# -gt 0 ]] || die "no TensorRT include dir given (usage: bash tools/check_trt_plugin.sh INCLUDE_DIR ...)"
command -v cmake >/dev/null || die "cmake not found (need >= 3.22)"
[[ -n ${CUDACXX:-} ]] || CUDACXX=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
command -v "$CUDACXX" >/dev/null || die "nvcc not found (PATH, CUDACXX or /usr/local/cuda/bin/nvcc): the plugin needs the CUDA kernel"
export CUDACXX
cxx=${CXX:-c++}

check_one() {
    local inc=$1 version=$2 build=$3
    # ORT op, samples and sanitizer builds off: this checks the TensorRT front end only.
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSPAN_WITH_CUDA=ON \
        "-DCMAKE_CUDA_ARCHITECTURES=$arch" "-DTensorRT_INCLUDE_DIR=$inc" -DTENSORRT_ROOT= \
        -DSPAN_BUILD_ORT_OP=OFF -DSPAN_BUILD_SAMPLES=OFF -DSPAN_SANITIZE_CHECK=OFF &&
        cmake --build "$build" --parallel "$(nproc 2>/dev/null || echo 2)" --target \
            span_deploy_trt_plugin span_deploy_trt_plugin_static swa_trt_plugin_smoke swa_trt_plugin_static_check &&
        "$build/bin/swa_trt_plugin_smoke" "$build/lib/libspan_deploy_trt_plugin.so" &&
        "$build/bin/swa_trt_plugin_static_check"
}

source "$repo/tools/trt_headers.sh"
for_each_trt_include check_trt_plugin check_one "$@"
