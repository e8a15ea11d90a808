"""The C++ sample span_infer (build/bin/span_infer: the C runtime, no Python in it) against
`span-deploy predict` on every public classification / survival fixture, one segmentation fixture and
one model directory, within 1e-5; and the C API's per-patch outputs against the Python ORT backend.

Each fixture's checkpoint is exported once per module (plugin attention, as `span-deploy export`);
its slide.h5 is converted to the .npy pair span_infer reads (format conversion only)."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from tests.cases import PUBLIC_CASES, SEG_CASES, ids
from tests.cpp.cpp_runtime import Runtime, runtime_lib_path, span_infer_path

pytest.importorskip("torch")
pytest.importorskip("span_export")

ATOL = 1e-5
SEG = next(p for p in SEG_CASES if p.name == "seg_default")
TINY = next(p for p in PUBLIC_CASES if p.name == "cls_tiny_alltoall")


@pytest.fixture(scope="module")
def ops_lib() -> Path:
    from tests.cases import ops_library_or_skip

    return Path(ops_library_or_skip())


@pytest.fixture(scope="module")
def rt() -> Runtime:
    return Runtime(runtime_lib_path())


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """case -> plugin ONNX, exported on first use."""
    from span_deploy.backends.torch import export_checkpoint

    d = tmp_path_factory.mktemp("cpp_exports")
    cache: dict[str, Path] = {}

    def get(case: Path) -> Path:
        if case.name not in cache:
            cache[case.name] = export_checkpoint(case / "checkpoint.pt", case / "config.yaml", d / f"{case.name}.onnx",
                                                 attention="plugin")
        return cache[case.name]
    return get


def read_slide(case: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(case / "slide.h5", "r") as f:
        return f["feats"][()].astype(np.float32), f["cords"][()]


def npy_folder(case: Path, tmp: Path) -> Path:
    feats, coords = read_slide(case)
    out = tmp / f"{case.name}_npy"
    out.mkdir(exist_ok=True)
    np.save(out / "features.npy", feats)
    np.save(out / "coords.npy", coords)
    return out


def span_infer(*args) -> dict:
    r = subprocess.run([str(span_infer_path()), *map(str, args)], capture_output=True, text=True, timeout=300,
                       env={k: v for k, v in os.environ.items() if k != "SPAN_DEPLOY_OPS_LIB"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def predict(slide: Path, model: Path) -> dict:
    from span_deploy.cli import cli

    res = CliRunner().invoke(cli, ["predict", str(slide), "--model", str(model)])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def max_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max()) if a.size else 0.0


def compare_predictions(cpp: dict, py: dict, keys: list[str]) -> dict[str, float]:
    diffs = {}
    for k in keys:
        diffs[k] = max_diff(cpp[k], py[k])
        assert diffs[k] <= ATOL, f"{k}: C++ {cpp[k]} vs Python {py[k]} (max diff {diffs[k]:.3g})"
    for k in ("task", "num_patches", "stage_sizes"):
        assert cpp[k] == py[k], k
    return diffs


CLS_KEYS = ["logits", "slide_embedding"]


@pytest.mark.parametrize("case", PUBLIC_CASES, ids=ids(PUBLIC_CASES))
def test_span_infer_matches_predict(case, exports, ops_lib, tmp_path):
    model = exports(case)
    py = predict(case / "slide.h5", model)
    cpp = span_infer("--ops-lib", ops_lib, model, npy_folder(case, tmp_path))
    keys = CLS_KEYS + (["hazards", "survival", "risk"] if py["task"] == "survival" else ["probabilities"])
    diffs = compare_predictions(cpp, py, keys)
    if py["task"] == "classification":
        assert cpp["predicted_class"] == py["predicted_class"]
    assert cpp["slide_embedding_length"] == len(py["slide_embedding"]) > 0
    for g_cpp, g_py in zip(cpp["stage_global_tokens"], py["stage_global_tokens"], strict=True):
        assert max_diff(g_cpp, g_py) <= ATOL
    # the reference logits of the official code, for scale
    ref = np.load(case / "expected.npz")["logits"].reshape(-1)
    print(f"{case.name}: max |C++ - predict| {max(diffs.values()):.2e}, |C++ - official| "
          f"{max_diff(cpp['logits'], ref):.2e}")


@pytest.mark.parametrize("case", PUBLIC_CASES, ids=ids(PUBLIC_CASES))
def test_c_api_patch_outputs_match_python_backend(case, exports, ops_lib, rt):
    """Per-patch outputs come back in the caller's row order, as SpanResult's."""
    from span_deploy.backends.onnxruntime import OrtBackend

    model = exports(case)
    feats, coords = read_slide(case)
    want = OrtBackend(model).run(coords, feats)
    with rt.open(model, ops_lib) as m:
        got = m.run(feats, coords)
    assert list(got["stage_sizes"]) == want.stage_sizes
    for name, w in [("logits", want.logits), ("slide_embedding", want.slide_embedding),
                    ("patch_features", want.patch_features), ("patch_scores", want.patch_scores)] + \
            [(f"stage{s}_globals", g) for s, g in enumerate(want.stage_globals)]:
        assert got[name].shape == w.shape, name
        assert max_diff(got[name], w) <= ATOL, name
    assert got["timings"].shape == (3,) and (got["timings"] >= 0).all()


def test_segmentation_fixture(exports, ops_lib, tmp_path):
    model = exports(SEG)
    feats, coords = read_slide(SEG)
    np.save(tmp_path / "f.npy", feats)
    np.save(tmp_path / "c.npy", coords.astype(np.int32))       # '<i4' coordinates, the FEATS COORDS form
    cpp = span_infer("--ops-lib", ops_lib, model, tmp_path / "f.npy", tmp_path / "c.npy")
    py = predict(SEG / "slide.h5", model)
    diffs = compare_predictions(cpp, py, ["patch_logits", "patch_probabilities", "slide_embedding"])
    assert cpp["patch_labels"] == py["patch_labels"] and cpp["num_positive"] == py["num_positive"]
    assert cpp["threshold"] == py["threshold"]
    ref = np.load(SEG / "expected.npz")["patch_logits"].reshape(-1)
    print(f"{SEG.name}: max |C++ - predict| {max(diffs.values()):.2e}, patches {len(ref)}")
    low = span_infer("--ops-lib", ops_lib, "--threshold", "0.01", model, tmp_path / "f.npy", tmp_path / "c.npy")
    assert low["threshold"] == 0.01 and low["num_positive"] >= cpp["num_positive"]


def test_model_directory(tmp_path, ops_lib):
    """`span-deploy export --target cpu-fp32 -o DIR`: span_infer opens DIR (deploy.json names the ONNX)
    and finds the custom-op library by itself when it is given none (here: beside the runtime, or in
    the model folder)."""
    from span_deploy.cli import cli

    d = tmp_path / "model_dir"
    res = CliRunner().invoke(cli, ["export", "--checkpoint", str(TINY / "checkpoint.pt"), "--config",
                                   str(TINY / "config.yaml"), "--target", "cpu-fp32", "-o", str(d)])
    assert res.exit_code == 0, res.output
    slide = npy_folder(TINY, tmp_path)
    py = predict(TINY / "slide.h5", d)
    cpp = span_infer("--ops-lib", ops_lib, "--threads", "1", d, slide)
    compare_predictions(cpp, py, CLS_KEYS + ["probabilities"])
    if not (runtime_lib_path().parent / ops_lib.name).is_file():
        (d / ops_lib.name).symlink_to(ops_lib)               # the model folder is the last place looked in
    compare_predictions(span_infer(d, slide), py, CLS_KEYS + ["probabilities"])


def test_portable_fp32_and_fp16_exports(tiny_exports, rt, tmp_path):
    """Portable exports need no custom-op library; fp16 exports take float16 feats (converted as numpy
    does, round to nearest even)."""
    from span_deploy.backends.onnxruntime import OrtBackend

    feats, coords = read_slide(TINY)
    for key in ("fp32", "fp16"):
        want = OrtBackend(tiny_exports[key]).run(coords, feats)
        with rt.open(tiny_exports[key]) as m:
            assert m.info()["precision"] == key and m.info()["attention"] == "portable"
            got = m.run(feats, coords)
        for name, w in [("logits", want.logits), ("slide_embedding", want.slide_embedding),
                        ("patch_scores", want.patch_scores), ("patch_features", want.patch_features)]:
            assert max_diff(got[name], w) <= ATOL, (key, name)
    py = predict(TINY / "slide.h5", tiny_exports["fp32"])
    cpp = span_infer(tiny_exports["fp32"], npy_folder(TINY, tmp_path))
    compare_predictions(cpp, py, CLS_KEYS)
    assert cpp["backend"] == "cpp-ort"


def test_one_model_many_threads(exports, ops_lib, rt):
    """A model handle is shared by concurrent span_model_run calls (ctypes drops the GIL): every result
    equals the serial one."""
    case = next(p for p in PUBLIC_CASES if p.name == "cls_default_r50")
    feats, coords = read_slide(case)
    rng = np.random.default_rng(0)
    subsets = [np.sort(rng.choice(len(coords), size=int(rng.integers(50, len(coords))), replace=False)) for _ in range(6)]
    with rt.open(exports(case), ops_lib, threads=1) as m:
        serial = [m.run(feats[s], coords[s])["logits"] for s in subsets]
        got: dict[int, np.ndarray] = {}
        errors: list[BaseException] = []

        def work(i: int):
            try:
                for _ in range(2):
                    got[i] = m.run(feats[subsets[i]], coords[subsets[i]])["logits"]
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(subsets))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for i, s in enumerate(serial):
        np.testing.assert_array_equal(got[i], s)
