"""The CMake package: `cmake --install BUILD --prefix P`, then projects that only know P
(find_package(span_deploy)): a tiny C consumer (the header is C) and samples/cpp built on its own.
Both run from their build folders without LD_LIBRARY_PATH (the prefix carries ONNX Runtime)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.cases import PUBLIC
from tests.cpp.cpp_runtime import REPO, Runtime, missing, runtime_lib_path, span_infer_path

TINY = PUBLIC / "cls_tiny_alltoall"

CONSUMER_CMAKE = """\
cmake_minimum_required(VERSION 3.22)
project(span_consumer LANGUAGES C)
find_package(span_deploy 0.1 REQUIRED)
add_executable(consumer main.c)
target_link_libraries(consumer PRIVATE span_deploy::runtime)
"""

CONSUMER_MAIN = r"""
#include <span_deploy/span_deploy.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  span_model* m = NULL;
  span_result* r = NULL;
  span_tensor t;
  if (argc != 2) return 2;
  if (span_model_open(argv[1], NULL, 1, &m) != SPAN_OK) { fprintf(stderr, "%s\n", span_last_error()); return 1; }
  const int64_t n = 9, f = span_model_feat_dim(m);
  float* feats = malloc(sizeof(float) * n * f);
  int64_t coords[18];
  for (int64_t i = 0; i < n; ++i) {
    coords[2 * i] = 224 * (i / 3) + 1000 * 224;
    coords[2 * i + 1] = 224 * (i % 3);
    for (int64_t j = 0; j < f; ++j) feats[i * f + j] = (float)((i * 31 + j * 7) % 17) / 17.0f - 0.5f;
  }
  if (span_model_run(m, feats, n, f, coords, &r) != SPAN_OK || span_result_find(r, "logits", &t) != SPAN_OK) {
    fprintf(stderr, "%s\n", span_last_error());
    return 1;
  }
  printf("{\"task\": \"%s\", \"logits\": [", span_model_task(m));
  for (int64_t i = 0; i < t.shape[0]; ++i) printf("%s%.9g", i ? ", " : "", ((const float*)t.data)[i]);
  printf("]}\n");
  span_result_free(r);
  span_model_free(m);
  free(feats);
  return 0;
}
"""


def build_dir() -> Path:
    d = Path(os.environ["SPAN_DEPLOY_RUNTIME_BUILD_DIR"]) if os.environ.get("SPAN_DEPLOY_RUNTIME_BUILD_DIR") \
        else runtime_lib_path().parent.parent
    if not (d / "CMakeCache.txt").is_file():
        missing(f"{d} is not a CMake build folder (set SPAN_DEPLOY_RUNTIME_BUILD_DIR)")
    return d


def sh(*cmd, cwd=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "SPAN_DEPLOY_OPS_LIB")}
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    if shutil.which("cmake") is None:
        missing("cmake not found")
    p = tmp_path_factory.mktemp("prefix")
    sh("cmake", "--install", build_dir(), "--prefix", p)
    return p


def test_install_layout(prefix):
    lib = prefix / "lib"
    assert (prefix / "include/span_deploy/span_deploy.h").is_file()
    assert (lib / "libspan_deploy_runtime.so").exists() and (lib / "libonnxruntime.so.1").is_file()
    for f in ("span_deployConfig.cmake", "span_deployConfigVersion.cmake", "span_deployTargets.cmake"):
        assert (lib / "cmake/span_deploy" / f).is_file()
    # only the C API is exported
    out = subprocess.run(["nm", "-D", "--defined-only", str(lib / "libspan_deploy_runtime.so")], capture_output=True,
                         text=True)
    if out.returncode == 0:
        names = [ln.split()[-1] for ln in out.stdout.splitlines() if ln.strip()]
        assert names and all(n.startswith("span_") for n in names), names


def test_c_consumer(prefix, tmp_path, tiny_exports):
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(CONSUMER_CMAKE)
    (src / "main.c").write_text(CONSUMER_MAIN)
    sh("cmake", "-S", src, "-B", tmp_path / "b", f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release")
    sh("cmake", "--build", tmp_path / "b")
    got = json.loads(sh(tmp_path / "b" / "consumer", tiny_exports["fp32"]))
    # the same slide through the build tree's library
    rt = Runtime(runtime_lib_path())
    with rt.open(tiny_exports["fp32"]) as m:
        f = m.feat_dim
        i, j = np.meshgrid(np.arange(9), np.arange(f), indexing="ij")
        feats = (((i * 31 + j * 7) % 17).astype(np.float32) / np.float32(17) - np.float32(0.5)).astype(np.float32)
        coords = np.stack([224 * (np.arange(9) // 3) + 1000 * 224, 224 * (np.arange(9) % 3)], axis=1)
        want = m.run(feats, coords)["logits"]
    assert got["task"] == "classification"
    np.testing.assert_allclose(got["logits"], want, rtol=0, atol=1e-6)


def test_sample_against_the_installed_package(prefix, tmp_path, tiny_exports):
    """samples/cpp configured on its own (find_package), the way a vendor builds against a release."""
    b = tmp_path / "sample"
    sh("cmake", "-S", REPO / "samples/cpp", "-B", b, f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release",
       "-DSPAN_INFER_WITH_HDF5=OFF")
    sh("cmake", "--build", b)
    import h5py

    with h5py.File(TINY / "slide.h5", "r") as f:
        np.save(tmp_path / "features.npy", f["feats"][()].astype(np.float32))
        np.save(tmp_path / "coords.npy", f["cords"][()])
    got = json.loads(sh(b / "span_infer", tiny_exports["fp32"], tmp_path))
    want = json.loads(sh(span_infer_path(), tiny_exports["fp32"], tmp_path))
    assert got["logits"] == want["logits"] and got["slide_embedding"] == want["slide_embedding"]
