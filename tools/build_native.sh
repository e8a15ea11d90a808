#!/usr/bin/env bash
# Configure and build the native libraries (Release) into build/ (libraries in build/lib/):
#   libspan_deploy_ops.so          ONNX Runtime custom op (headers fetched by install_ort_headers.sh)
#   libspan_deploy_trt_plugin.so   TensorRT plugin, when TENSORRT_ROOT or TensorRT_INCLUDE_DIR is set
# CUDA is compiled when nvcc is found (PATH, CUDACXX or /usr/local/cuda).
# Extra CMake arguments pass through, e.g. -DCMAKE_CUDA_ARCHITECTURES=87.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SPAN_BUILD_DIR:-$repo/build}
cd "$repo"

command -v cmake >/dev/null || { echo "build_native: error: cmake not found (need >= 3.24)" >&2; exit 1; }

ort_include=${ORT_INCLUDE_DIR:-}
if [[ -z $ort_include ]]; then
    bash "$repo/tools/install_ort_headers.sh" "$repo/build/ort-headers"
    ort_include=$repo/build/ort-headers/include
fi

args=(-S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release "-DORT_INCLUDE_DIR=$ort_include")
if command -v nvcc >/dev/null || [[ -n ${CUDACXX:-} ]] || [[ -x /usr/local/cuda/bin/nvcc ]]; then
    [[ -n ${CUDACXX:-} ]] || export CUDACXX=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    args+=(-DSPAN_WITH_CUDA=ON)
else
    echo "build_native: nvcc not found: building the CPU kernel only"
    args+=(-DSPAN_WITH_CUDA=OFF)
fi
# The C++ sample (samples/cpp) links the onnxruntime wheel's shared library: ORT_LIBRARY, or found
# through the first python (PYTHON, the active one, the repo's .venv, python3) that imports onnxruntime.
ort_library=${ORT_LIBRARY:-}
if [[ -z $ort_library ]]; then
    for py in ${PYTHON:-} python "$repo/.venv/bin/python" python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        ort_library=$("$py" -c 'import glob, os, onnxruntime as o
print((sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so.1*"))) or [""])[0])' \
            2>/dev/null) || ort_library=
        [[ -n $ort_library ]] && break
    done
fi
if [[ -n $ort_library ]]; then
    args+=("-DORT_LIBRARY=$ort_library")
else
    echo "build_native: onnxruntime (pip) not importable: skipping the C++ sample (set ORT_LIBRARY to build it)"
fi
[[ -n ${TENSORRT_ROOT:-} ]] && args+=("-DTENSORRT_ROOT=$TENSORRT_ROOT")
[[ -n ${TensorRT_INCLUDE_DIR:-} ]] && args+=("-DTensorRT_INCLUDE_DIR=$TensorRT_INCLUDE_DIR")

cmake "${args[@]}" "$@"
cmake --build "$build" --parallel "$(nproc 2>/dev/null || echo 2)"
echo "build_native: libraries in $build/lib:"
ls -1 "$build/lib"/*.so
