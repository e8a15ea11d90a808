#!/usr/bin/env bash
# Compile the C runtime's TensorRT engine path (cpp/src/trt_backend.cpp) against one or more TensorRT
# header trees, with no TensorRT library and no GPU: for each INCLUDE_DIR (a folder with
# NvInferRuntime.h and NvInferVersion.h) it configures its own build dir (the top-level CMakeLists, ORT
# on the CPU, -DSPAN_DEPLOY_WITH_TENSORRT=ON, CUDA architecture 80 only), builds libspan_deploy_runtime,
# span_deploy_selftest and span_infer with -Wall -Wextra -Werror, and checks:
#   - span_deploy_selftest passes (the pure parts: sidecar, SHA-256, profile check, which file to open);
#   - span_runtime_backends() of the built library says "ort,trt";
#   - the library does not link libnvinfer or libcudart (libnvinfer is dlopen'ed when an engine is
#     opened; cudart is static), has no undefined nvinfer symbol, and exports only span_*;
#   - opening a fake engine with libnvinfer missing is SPAN_ERR_RUNTIME naming libnvinfer (when this
#     machine has no libnvinfer; span_infer on a generated sidecar).
# One PASS / FAIL line per TensorRT version; exit status non-zero when any fails.
#
#   bash tools/check_cpp_trt.sh [INCLUDE_DIR ...]   (default: $TensorRT_INCLUDE_DIR)
#   e.g. bash tools/check_cpp_trt.sh /tmp/trt/v10.3.0/include /tmp/trt/v10.16/include /tmp/trt/v11.1/include
#
# Headers: the public ones of NVIDIA's TensorRT repository are enough (see tools/check_trt_plugin.sh).
# Needs CMake >= 3.22, a C++17 compiler, the CUDA toolkit (nvcc for the top-level configure, the
# cudart headers and static library), the ORT headers (ORT_INCLUDE_DIR, default build/ort-headers/include;
# tools/install_ort_headers.sh) and an ONNX Runtime library (ORT_LIBRARY, default: the onnxruntime
# wheel of PYTHON / .venv). The engine path itself never runs here (no TensorRT, no GPU).
# Build dirs: $SPAN_CPP_TRT_CHECK_DIR/trt-<version> (default build/cpp-trt-check/); log: check.log in each.
# The libraries stay there: SPAN_DEPLOY_RUNTIME_LIB=<dir>/lib/libspan_deploy_runtime.so
# SPAN_INFER_BIN=<dir>/bin/span_infer pytest tests/cpp/test_cpp_trt.py runs the C API checks against one.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=${SPAN_CPP_TRT_CHECK_DIR:-$repo/build/cpp-trt-check}
arch=${SPAN_CUDA_ARCH:-80}

die() { echo "check_cpp_trt: error: $*" >&2; exit 2; }
[[ $# -gt 0 ]] || set -- ${TensorRT_INCLUDE_DIR:-}
[[ $# -gt 0 ]] || die "no TensorRT include dir given (usage: bash tools/check_cpp_trt.sh INCLUDE_DIR ...)"
command -v cmake >/dev/null || die "cmake not found (need >= 3.22)"
[[ -n ${CUDACXX:-} ]] || CUDACXX=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
command -v "$CUDACXX" >/dev/null || die "nvcc not found (PATH, CUDACXX or /usr/local/cuda/bin/nvcc): the TensorRT path needs the CUDA toolkit"
export CUDACXX
cxx=${CXX:-c++}

ort_include=${ORT_INCLUDE_DIR:-$repo/build/ort-headers/include}
[[ -f $ort_include/onnxruntime_cxx_api.h ]] ||
    die "no onnxruntime_cxx_api.h in $ort_include (set ORT_INCLUDE_DIR, or run tools/install_ort_headers.sh)"
ort_library=${ORT_LIBRARY:-}
python=
for py in ${PYTHON:-} "$repo/.venv/bin/python" python3 python; do
    command -v "$py" >/dev/null 2>&1 && "$py" -c 'import onnxruntime' 2>/dev/null && { python=$py; break; }
done
if [[ -z $ort_library && -n $python ]]; then
    ort_library=$("$python" -c 'import glob, os, onnxruntime as o
print((sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so.1*"))) or [""])[0])')
fi
[[ -n $ort_library && -f $ort_library ]] || die "no ONNX Runtime library (set ORT_LIBRARY, or pip install onnxruntime)"

has_libnvinfer() {
    ldconfig -p 2>/dev/null | grep -q 'libnvinfer\.so' && return 0
    [[ -n $python ]] && "$python" - <<'EOF' 2>/dev/null
import ctypes, sys
for n in ("libnvinfer.so.10", "libnvinfer.so.11"):
    try:
        ctypes.CDLL(n); sys.exit(0)
    except OSError:
        pass
sys.exit(1)
EOF
}

# The built library, checked without TensorRT: links, symbols, backends, libnvinfer missing.
check_library() {  # build dir
    local b=$1 lib=$1/lib/libspan_deploy_runtime.so
    "$b/bin/span_deploy_selftest"
    if readelf -d "$lib" | grep -E 'NEEDED.*(libnvinfer|libcudart)'; then
        echo "libspan_deploy_runtime links libnvinfer / libcudart (it must dlopen libnvinfer, static cudart)"; return 1
    fi
    if nm -D --undefined-only "$lib" | grep -Ei 'nvinfer|createInferRuntime|getPluginRegistry'; then
        echo "undefined nvinfer symbols in libspan_deploy_runtime"; return 1
    fi
    local stray
    stray=$(nm -D --defined-only "$lib" | awk '{print $NF}' | grep -v '^span_' || true)
    [[ -z $stray ]] || { echo "exports other than span_*: $stray"; return 1; }
    [[ -n $python ]] || { echo "(no python with onnxruntime: backend / missing-libnvinfer checks skipped)"; return 0; }
    "$python" - "$lib" <<'EOF'
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.span_runtime_backends.restype = ctypes.c_char_p
got = lib.span_runtime_backends()
assert got == b"ort,trt", got
EOF
    has_libnvinfer && { echo "(this machine has a libnvinfer: the missing-libnvinfer check is skipped)"; return 0; }
    local tmp
    tmp=$(mktemp -d)
    "$python" - "$repo" "$tmp" <<'EOF'
import hashlib, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from span_deploy.config import load_config
from span_deploy.metadata import make_metadata
d = Path(sys.argv[2])
from tests.cases import PUBLIC
cfg = load_config(PUBLIC / "cls_tiny_alltoall" / "config.yaml")
import numpy as np
np.save(d / "features.npy", np.zeros((4, cfg.feat_dim), np.float32))
np.save(d / "coords.npy", np.array([[0, 0], [224, 0], [0, 224], [224, 224]], np.int64))
data = b"not a serialised engine"
(d / "model.engine").write_bytes(data)
(d / "model.engine.json").write_text(json.dumps({"format": 1, "span_deploy": make_metadata(cfg, "portable", "fp32"),
                                                 "max_tokens": 100, "engine_sha256": hashlib.sha256(data).hexdigest()}))
EOF
    local out rc=0
    out=$(env -u SPAN_DEPLOY_NVINFER_LIB "$b/bin/span_infer" "$tmp/model.engine" "$tmp" 2>&1) || rc=$?
    rm -rf "$tmp"
    echo "span_infer on a fake engine, no libnvinfer: exit $rc: $out"
    [[ $rc == 1 && $out == *"TensorRT's library libnvinfer.so."*"could not be loaded"* ]] ||
        { echo "expected exit 1 and 'libnvinfer.so.N could not be loaded'"; return 1; }
}

check_one() {
    local inc=$1 version=$2 build=$3
    # Only the runtime's targets are built: no kernels, ORT op, plugin or sanitizer builds.
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSPAN_WITH_CUDA=ON \
        "-DCMAKE_CUDA_ARCHITECTURES=$arch" "-DTensorRT_INCLUDE_DIR=$inc" -DTENSORRT_ROOT= \
        "-DORT_INCLUDE_DIR=$ort_include" "-DORT_LIBRARY=$ort_library" -DSPAN_BUILD_SAMPLES=ON \
        -DSPAN_BUILD_ORT_OP=OFF -DSPAN_BUILD_TRT_PLUGIN=OFF -DSPAN_SANITIZE_CHECK=OFF \
        -DSPAN_DEPLOY_WITH_TENSORRT=ON -DSPAN_INFER_WITH_HDF5=OFF "-DCMAKE_CXX_FLAGS=-Werror" \
        >"$build/configure.log" 2>&1 &&
        cat "$build/configure.log" && grep -q 'C runtime TensorRT engines ON' "$build/configure.log" &&
        cmake --build "$build" --parallel "$(nproc 2>/dev/null || echo 2)" --target \
            span_deploy_runtime span_deploy_selftest span_infer &&
        check_library "$build"
}

source "$repo/tools/trt_headers.sh"
for_each_trt_include check_cpp_trt check_one "$@"
