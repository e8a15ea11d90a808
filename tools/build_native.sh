#!/usr/bin/env bash
# Configure and build the native libraries (Release) into build/ (libraries in build/lib/):
#   libswa_kernels.a               the kernels (CPU; CUDA when nvcc is found: PATH, CUDACXX or
#                                  /usr/local/cuda)
#   libspan_deploy_ops.so          ONNX Runtime custom op, when the ORT C/C++ headers can be had
#   libspan_deploy_trt_plugin.so   TensorRT plugin (+ libspan_deploy_trt_plugin_static.a), when the
#                                  TensorRT headers are found: TENSORRT_ROOT, TensorRT_INCLUDE_DIR,
#                                  or /usr/include/{aarch64,x86_64}-linux-gnu (JetPack, NVIDIA's
#                                  Debian/Ubuntu packages); needs CUDA
#   libspan_deploy_runtime.so      the C runtime (cpp/, span_deploy.h) + build/bin/span_infer, when the
#                                  ORT headers and ORT_LIBRARY (the onnxruntime wheel's) are found; it
#                                  also runs TensorRT engines when the TensorRT headers and CUDA are
#                                  found (libnvinfer loaded at run time)
#
# Usage: bash tools/build_native.sh [--cuda-arch LIST] [CMAKE_ARGS ...]
#   --cuda-arch LIST  CUDA architectures (CMAKE_CUDA_ARCHITECTURES): 87 (Jetson Orin), 90,
#                     "80;86" or 80,86. Default 75;80;86;87;89;90 (a build dir keeps the last value).
#   -h, --help        this text
#   Other arguments go to CMake, e.g. -DSPAN_SANITIZE_CHECK=OFF. Needs CMake >= 3.22.
#
# Environment:
#   SPAN_BUILD_DIR    build folder (default <repo>/build)
#   ORT_INCLUDE_DIR   folder with onnxruntime_cxx_api.h (used as is, nothing is downloaded)
#   SPAN_ORT_HEADERS  auto (default): ORT_INCLUDE_DIR, else build/ort-headers, else Debian's
#                     libonnxruntime-dev fetched by tools/install_ort_headers.sh where that can work
#                     (apt-get, dpkg, the Debian archive keyring and a Debian mirror in the apt
#                     config); none: build without the ORT op, as when no headers can be had.
#                     Without headers one line says the ORT custom op (and the C++ sample) are
#                     skipped; the kernels and the TensorRT plugin still build, and the exit is 0.
#   TENSORRT_ROOT, TensorRT_INCLUDE_DIR   TensorRT install prefix / header folder
#   ORT_LIBRARY, PYTHON   the C++ sample's libonnxruntime.so / the python whose onnxruntime has it
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SPAN_BUILD_DIR:-$repo/build}
cd "$repo"

die() { echo "build_native: error: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo pipefail$/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

cuda_arch=
cmake_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --cuda-arch) [[ $# -ge 2 ]] || die "--cuda-arch needs a value, e.g. --cuda-arch 87"; cuda_arch=$2; shift 2 ;;
    --cuda-arch=*) cuda_arch=${1#*=}; shift ;;
    *) cmake_args+=("$1"); shift ;;
    esac
done
if [[ -n $cuda_arch ]]; then
    cuda_arch=${cuda_arch//,/;}
    arch_re='^[0-9]+(-real|-virtual)?(;[0-9]+(-real|-virtual)?)*$'
    # No "native" / "all": those need CMake 3.23-3.24 (JetPack has 3.22).
    [[ $cuda_arch =~ $arch_re ]] ||
        die "--cuda-arch '$cuda_arch': expected compute capabilities such as 87, 90 or \"80;86\""
fi

command -v cmake >/dev/null || die "cmake not found (need >= 3.22)"

# --- ONNX Runtime headers: given, already fetched, fetched now, or none (ORT op skipped) -------
ort_mode=${SPAN_ORT_HEADERS:-auto}
[[ $ort_mode == auto || $ort_mode == none ]] || die "SPAN_ORT_HEADERS='$ort_mode': expected auto or none"
ort_include=
ort_missing=  # why there are no headers
if [[ $ort_mode == none ]]; then
    ort_missing="SPAN_ORT_HEADERS=none"
elif [[ -n ${ORT_INCLUDE_DIR:-} ]]; then
    [[ -f $ORT_INCLUDE_DIR/onnxruntime_cxx_api.h ]] || die "ORT_INCLUDE_DIR=$ORT_INCLUDE_DIR has no onnxruntime_cxx_api.h"
    ort_include=$ORT_INCLUDE_DIR
else
    # install_ort_headers.sh reuses headers already there, and stops with one error line where the
    # Debian source cannot work (no apt-get / dpkg / keyring / Debian mirror) or the fetch fails.
    if out=$(bash "$repo/tools/install_ort_headers.sh" "$repo/build/ort-headers" 2>&1); then
        echo "$out"
        ort_include=$repo/build/ort-headers/include
    else
        ort_missing=$(tail -n1 <<<"$out")
        ort_missing=${ort_missing#install_ort_headers: error: }
    fi
fi

args=(-S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release)
if [[ -n $ort_missing ]]; then
    echo "build_native: ONNX Runtime headers not found ($ort_missing; set ORT_INCLUDE_DIR=<dir with" \
        "onnxruntime_cxx_api.h>): skipping the ORT custom op; kernels and the TensorRT plugin still build"
    args+=(-DSPAN_BUILD_ORT_OP=OFF -DSPAN_BUILD_SAMPLES=OFF)
else
    args+=("-DORT_INCLUDE_DIR=$ort_include" -DSPAN_BUILD_ORT_OP=ON -DSPAN_BUILD_SAMPLES=ON)
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
fi

if command -v nvcc >/dev/null || [[ -n ${CUDACXX:-} ]] || [[ -x /usr/local/cuda/bin/nvcc ]]; then
    [[ -n ${CUDACXX:-} ]] || export CUDACXX=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    args+=(-DSPAN_WITH_CUDA=ON)
else
    echo "build_native: nvcc not found: building the CPU kernel only"
    args+=(-DSPAN_WITH_CUDA=OFF)
fi
[[ -n $cuda_arch ]] && args+=("-DCMAKE_CUDA_ARCHITECTURES=$cuda_arch")
[[ -n ${TENSORRT_ROOT:-} ]] && args+=("-DTENSORRT_ROOT=$TENSORRT_ROOT")
[[ -n ${TensorRT_INCLUDE_DIR:-} ]] && args+=("-DTensorRT_INCLUDE_DIR=$TensorRT_INCLUDE_DIR")

cmake "${args[@]}" "${cmake_args[@]}"
cmake --build "$build" --parallel "$(nproc 2>/dev/null || echo 2)"
echo "build_native: libraries in $build/lib:"
for lib in "$build"/lib/*.so "$build"/lib/*.a; do
    [[ -e $lib ]] && echo "$lib"
done
exit 0
