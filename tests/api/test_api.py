"""The Python API: load once, predict in memory (golden parity, units, bad input), thread safety,
process_slide with progress and cancellation, and the README's example as written."""
from __future__ import annotations

import re
import subprocess
import sys
import threading

import numpy as np
import pytest

import span_deploy
from span_deploy.errors import ConfigError, FeatureFileError, SpanDeployError
from span_deploy.features import read_features
from tests.cases import PUBLIC, REPO, ops_library_or_skip

DEMO = REPO / "samples" / "demo"
SLIDE = REPO / "samples" / "data" / "CMU-1-Small-Region.svs"
CASES = [PUBLIC / n for n in ("cls_default_r50", "surv_default_large_offsets", "cls_tiny_alltoall")]


@pytest.fixture(scope="module")
def models():
    ops_library_or_skip()
    return {c.name: span_deploy.load(c / "checkpoint.pt", config=c / "config.yaml", threads=1) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_predict_in_memory_matches_the_official_golden(models, case):
    m = models[case.name]
    sf = read_features(case / "slide.h5")
    p = m.predict(sf.feats, sf.coords)
    want = np.load(case / "expected.npz")
    np.testing.assert_allclose(p.logits, want["logits"].reshape(-1), atol=1e-4, rtol=0)
    assert p.num_patches == len(sf.coords) and p.patch_scores.shape == (len(sf.coords),)
    assert p.slide_embedding.ndim == 1 and len(p.stage_embeddings) >= 1
    assert all(g.ndim == 2 for g in p.stage_embeddings)
    if m.task == "survival":
        np.testing.assert_allclose(p.hazards, 1 / (1 + np.exp(-p.logits)), rtol=1e-6)
        np.testing.assert_allclose(p.survival, np.cumprod(1 - p.hazards), rtol=1e-5)
        assert p.risk == pytest.approx(-p.survival.sum(), rel=1e-5)
    else:
        assert p.probabilities.sum() == pytest.approx(1.0) and p.predicted_class == int(np.argmax(p.logits))
    assert set(p.to_dict()) >= {"task", "logits", "slide_embedding"}


def test_level0_coords_with_their_step_give_the_same_prediction(models):
    m = models["cls_default_r50"]
    sf = read_features(PUBLIC / "cls_default_r50" / "slide.h5")
    grid = sf.coords // 224
    a = m.predict(sf.feats, sf.coords)
    b = m.predict(sf.feats, grid * 491, coords_step=491)            # TRIDENT level-0 px at 40x
    np.testing.assert_array_equal(a.logits, b.logits)
    with pytest.raises(ConfigError, match="not on a grid of step 491"):
        m.predict(sf.feats, grid * 491 + 100, coords_step=491)


def test_bad_arrays_get_one_clear_error(models):
    m = models["cls_tiny_alltoall"]
    sf = read_features(PUBLIC / "cls_tiny_alltoall" / "slide.h5")
    f = sf.feats.copy()
    f[1, 0] = np.nan
    with pytest.raises(FeatureFileError, match=r"predict\(\) arguments: 1 patch\(es\) have NaN"):
        m.predict(f, sf.coords)
    with pytest.raises(FeatureFileError, match="expects"):
        m.predict(sf.feats[:, :-1], sf.coords)
    with pytest.raises(FeatureFileError, match="coordinates"):
        m.predict(sf.feats, sf.coords[:-1])
    with pytest.raises(ConfigError, match="segmentation"):
        m.predict(sf.feats, sf.coords, threshold=0.5)


def test_one_model_shared_by_threads_gives_the_serial_results(models):
    jobs = [(c.name, read_features(c / "slide.h5")) for c in CASES] * 4
    serial = [models[n].predict(sf.feats, sf.coords).logits for n, sf in jobs]
    got: list = [None] * len(jobs)
    errors: list = []

    def work(i):
        try:
            n, sf = jobs[i]
            got[i] = models[n].predict(sf.feats, sf.coords).logits
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    for a, b in zip(serial, got):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def demo():
    ops_library_or_skip()
    return span_deploy.load(DEMO / "span.onnx", threads=2)       # encoder.onnx next to it


def test_process_slide_reports_progress_and_writes_what_run_writes(demo, tmp_path):
    seen = []
    rec = demo.process_slide(SLIDE, tmp_path, progress=lambda *a: seen.append(a))
    stages = [s for s, _, _ in seen]
    assert stages[0] == "tiling" and stages[-1] == "writing" and "span" in stages
    tiles = [(d, t) for s, d, t in seen if s == "tiles"]
    assert tiles[-1] == (rec["n_tiles"], rec["n_tiles"]) and all(a <= b for (a, _), (b, _) in zip(tiles, tiles[1:]))
    d = tmp_path / SLIDE.stem
    assert {"result.json", "heatmap.png", "tiles.geojson", f"{SLIDE.stem}.h5", "embedding.npy"} <= \
        {p.name for p in d.iterdir()}


def test_cancel_stops_the_slide_and_leaves_no_result(demo, tmp_path):
    cancel = threading.Event()

    def progress(stage, done, total):
        if stage == "tiles":
            cancel.set()

    with pytest.raises(span_deploy.Cancelled):
        demo.process_slide(SLIDE, tmp_path, options=span_deploy.SlideOptions(batch_size=8), progress=progress,
                           cancel=cancel)
    assert not (tmp_path / SLIDE.stem).exists()


def test_embed_slide_equals_the_process_slide_embedding(demo, tmp_path):
    rec = demo.process_slide(SLIDE, tmp_path)
    emb = demo.embed_slide(SLIDE)
    np.testing.assert_allclose(emb, np.load(rec["outputs"]["embedding"]), atol=1e-6)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="model not found"):
        span_deploy.load(tmp_path / "nope.onnx")
    m = span_deploy.load(PUBLIC / "cls_tiny_alltoall" / "checkpoint.pt",
                         config=PUBLIC / "cls_tiny_alltoall" / "config.yaml")
    with pytest.raises(ConfigError, match="needs the patch encoder"):
        m.embed_slide(SLIDE)
    with pytest.raises(SpanDeployError, match="gives 512-d features but the model expects"):
        span_deploy.load(PUBLIC / "cls_default_r50" / "checkpoint.pt", config=PUBLIC / "cls_default_r50" / "config.yaml",
                         encoder=DEMO / "encoder.onnx")


def test_the_package_is_typed():
    import pathlib
    assert (pathlib.Path(span_deploy.__file__).parent / "py.typed").is_file()


def test_readme_api_example_runs_as_written(tmp_path):
    ops_library_or_skip()
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "samples").symlink_to(REPO / "samples")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "classification" in r.stdout
