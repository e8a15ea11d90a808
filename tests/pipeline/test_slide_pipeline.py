"""Pipeline end to end: outputs, resume, skip-errors, dim check, embedding API, commands."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from tests.support.stand_in import MeanColourEncoder, StandInBackend

from span_deploy.errors import ConfigError, SlideError
from span_deploy.pipeline import SlideOptions, embed_slide, run_slides
from span_deploy.slide import open_slide, tile_slide


@pytest.fixture
def slides(make_slide, tmp_path):
    good1 = make_slide("good1.tif", 10, 8, tissue_cells=(1, 1, 5, 4))      # 12 tiles
    good2 = make_slide("good2.tif", 6, 6, tissue_cells=(2, 2, 4, 5))       # 6 tiles
    blank = make_slide("blank.tif", 6, 6, tissue_cells=None)
    trunc = tmp_path / "trunc.tif"
    trunc.write_bytes(good1.read_bytes()[:3000])
    return good1, good2, blank, trunc


def _summary(out):
    return {r["slide"].rsplit("/", 1)[-1]: r for r in csv.DictReader((out / "summary.csv").open())}


def test_run_outputs_and_skip_errors(slides, tmp_path):
    good1, good2, blank, trunc = slides
    out, enc, be = tmp_path / "out", MeanColourEncoder(), StandInBackend(6)
    recs = run_slides([good1, blank, trunc, good2], enc, be, out, batch_size=5, workers=2,
                      skip_errors=True)
    assert [r["status"] for r in recs] == ["ok", "failed", "failed", "ok"]
    s = _summary(out)
    assert s["good1.tif"]["n_tiles"] == "12" and s["good2.tif"]["n_tiles"] == "6"
    assert s["blank.tif"]["error_type"] == "SlideError" and "no tissue" in s["blank.tif"]["error"]
    assert "truncated" in s["trunc.tif"]["error"]
    assert (out / "blank" / "error.json").is_file() and not (out / "blank" / "result.json").exists()
    d = out / "good1"
    assert sorted(p.name for p in d.iterdir()) == ["embedding.npy", "good1.h5", "heatmap.png",
                                                   "result.json", "tiles.geojson"]
    with h5py.File(d / "good1.h5") as f:       # named after the slide, as the official loader expects
        feats, coords, cords = f["feats"][()], f["coords"][()], f["cords"][()]
        attrs = dict(f["coords"].attrs)
    assert attrs["name"] == "good1" and attrs["overlap"] == 0 and attrs["patch_size"] == 224
    assert attrs["level0_magnification"] == 20.0 and attrs["target_magnification"] == 20.0  # 0.5 µm/px
    # the features are the encoder's output on the tiles at those coords (pink tissue)
    with open_slide(good1) as r:
        ref = enc(np.stack([r.read_tile(*xy) for xy in coords]))
    np.testing.assert_allclose(feats, ref, rtol=1e-6)
    np.testing.assert_allclose(feats[:, :3], np.tile([205 / 255, 120 / 255, 175 / 255], (12, 1)), atol=1e-6)
    assert np.array_equal(cords, coords) and len(feats) == 12      # 0.5 µm/px: step0 = 224
    # the backend got exactly the stored cords and features, in order
    got_c, got_f = be.calls[0]
    assert np.array_equal(got_c, cords) and np.array_equal(got_f, feats)
    res = json.loads((d / "result.json").read_text())
    assert res["n_tiles"] == 12 and res["geometry"]["patch_size_level0"] == 224
    np.testing.assert_allclose(np.load(d / "embedding.npy"), feats.mean(0), rtol=1e-6)
    assert len(json.loads((d / "tiles.geojson").read_text())["features"]) == 12
    assert not list(out.rglob(".*.tmp*"))                       # no temp files left behind


def test_resume_and_stop_on_error(slides, tmp_path):
    good1, good2, blank, _ = slides
    out, enc, be = tmp_path / "out", MeanColourEncoder(), StandInBackend(6)
    with pytest.raises(SlideError, match="no tissue"):
        run_slides([good1, blank, good2], enc, be, out)       # stops at blank
    s = _summary(out)
    assert s["good1.tif"]["status"] == "ok" and s["blank.tif"]["status"] == "failed"
    assert "good2.tif" not in s and len(be.calls) == 1
    mtime = (out / "good1" / "result.json").stat().st_mtime_ns
    recs = run_slides([good1, blank, good2], enc, be, out, resume=True, skip_errors=True)
    assert [r["status"] for r in recs] == ["skipped", "failed", "ok"]   # failures are retried
    assert len(be.calls) == 2 and (out / "good1" / "result.json").stat().st_mtime_ns == mtime
    assert _summary(out)["good1.tif"]["n_tiles"] == "12"


def test_resume_redoes_slides_done_with_other_settings(slides, tmp_path, capsys):
    good1, good2, _, _ = slides
    out, enc, be = tmp_path / "out", MeanColourEncoder(), StandInBackend(6)
    run_slides([good1, good2], enc, be, out)
    assert len(be.calls) == 2
    recs = run_slides([good1, good2], enc, be, out, resume=True)
    assert [r["status"] for r in recs] == ["skipped", "skipped"] and len(be.calls) == 2
    other = SlideOptions(tissue_threshold=0.5)
    recs = run_slides([good1, good2], enc, be, out, resume=True, options=other)
    assert [r["status"] for r in recs] == ["ok", "ok"] and len(be.calls) == 4
    assert "done with other settings (tissue_threshold): redoing it" in capsys.readouterr().err
    rec = json.loads((out / "good1" / "result.json").read_text())
    assert rec["settings"]["tissue_threshold"] == 0.5 and rec["settings"]["encoder"] == "mean-colour"


def test_corrupt_tile_mid_slide(make_slide, tmp_path):
    """A bad tile in level 0 (file opens fine) fails the slide from a reader thread."""
    import tifffile
    p = make_slide("cm.tif", 10, 8, tissue_cells=(1, 1, 9, 7))
    with tifffile.TiffFile(p) as tf:
        off, n = tf.pages[0].dataoffsets[5], tf.pages[0].databytecounts[5]
    data = bytearray(p.read_bytes())
    data[off:off + n] = bytes(n)                       # zero one deflate stream
    p.write_bytes(bytes(data))
    out = tmp_path / "out"
    recs = run_slides([p], MeanColourEncoder(), StandInBackend(6), out, batch_size=4, workers=2,
                      skip_errors=True)
    assert recs[0]["status"] == "failed" and "cannot decode the tile" in recs[0]["error"]
    assert "cm.tif" in recs[0]["error"] and not (out / "cm" / "result.json").exists()
    assert not (out / "cm" / "cm.h5").exists()


def test_feature_dim_mismatch_before_reading(slides, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="6-d features but the SPAN model expects 1024-d"):
        run_slides([slides[0]], MeanColourEncoder(), StandInBackend(1024), out)
    assert not out.exists()


def test_duplicate_stems_refused(slides, tmp_path):
    other = tmp_path / "sub"
    other.mkdir()
    dup = other / "good1.tif"
    dup.write_bytes(slides[0].read_bytes())
    with pytest.raises(ConfigError, match="share the name"):
        run_slides([slides[0], dup], MeanColourEncoder(), StandInBackend(6), tmp_path / "out")


def test_embed_slide_path_equals_own_tiles(ndpi):
    enc, be = MeanColourEncoder(), StandInBackend(6)
    emb = embed_slide(ndpi, enc, be, batch_size=16)
    with open_slide(ndpi) as r:
        g = tile_slide(r)
        own = [(r.read_tile(*xy), (int(xy[0]), int(xy[1]))) for xy in g.coords]
        step = r.step0
    emb2 = embed_slide(iter(own), enc, be, batch_size=7, tile_step=step)
    assert emb.shape == (6,) and emb[2] > emb[0]                        # blue > red (DAPI)
    np.testing.assert_allclose(emb, emb2, rtol=1e-6)
    assert np.array_equal(be.calls[0][0], be.calls[1][0])               # same grid coords
    with pytest.raises(SlideError, match="not on the 491-px grid"):
        embed_slide(iter([(own[0][0], (5, 0))]), enc, be, tile_step=step)


def test_real_slides_with_onnx_encoder(svs, ndpi, tmp_path):
    """Real slides -> real ONNX encoder (tiny ViT, random weights) -> stand-in SPAN."""
    torch = pytest.importorskip("torch")
    from span_export.encoders.export import export_module
    from span_deploy.encoders.runner import OnnxEncoder
    from span_export.encoders.vit import TINY, VisionTransformer
    torch.manual_seed(0)
    enc = OnnxEncoder(export_module(VisionTransformer(TINY).eval(), tmp_path / "e.onnx", "vit"))
    be = StandInBackend(64)
    recs = run_slides([svs, ndpi], enc, be, tmp_path / "out", batch_size=8, workers=2,
                      options=SlideOptions(progress=False))
    assert [r["status"] for r in recs] == ["ok", "ok"]
    assert recs[1]["geometry"]["tissue_mode"] == "fluorescence" and recs[1]["geometry"]["patch_level"] == 1
    for r in recs:
        with h5py.File(r["outputs"]["features"]) as f:
            assert f["features"].shape == (r["n_tiles"], 64)
            assert np.isfinite(f["features"][()]).all()


def test_commands_are_click_commands():
    import click

    from span_deploy.commands import embed, run
    assert isinstance(run.command, click.Command) and isinstance(embed.command, click.Command)
    res = CliRunner().invoke(run.command, ["--help"])
    assert res.exit_code == 0 and "--resume" in res.output and "--skip-errors" in res.output
    res = CliRunner().invoke(run.command, ["x.svs", "--model", "/nonexistent", "--output", "o"])
    assert res.exit_code == 2 and "does not exist" in res.output


DEMO = Path(__file__).resolve().parents[2] / "samples" / "demo"
SAMPLE_SVS = Path(__file__).resolve().parents[2] / "samples" / "data" / "CMU-1-Small-Region.svs"


def test_run_command_with_demo_model(tmp_path):
    """CLI end to end: sample SVS -> demo encoder (512-d) -> real ONNX Runtime SPAN backend."""
    if not (DEMO / "span.onnx").is_file() or not (DEMO / "encoder.onnx").is_file():
        pytest.skip("samples/demo model not present")
    from span_deploy.commands import embed, run
    out = tmp_path / "out"
    args = [str(SAMPLE_SVS), str(tmp_path / "missing.svs"), "--model", str(DEMO / "span.onnx"),
            "--output", str(out), "--skip-errors", "--no-progress"]
    res = CliRunner().invoke(run.command, args)       # encoder.onnx found next to the model
    assert res.exit_code == 1, res.output                # one slide failed
    assert "1 ok, 0 skipped (resume), 1 failed" in res.output
    rec = json.loads((out / "CMU-1-Small-Region" / "result.json").read_text())
    assert rec["n_tiles"] == 51 and rec["feature_dim"] == 512 and rec["backend"].startswith("ort")
    assert len(rec["logits"]) == 2
    res = CliRunner().invoke(run.command, args + ["--resume"])
    assert "0 ok, 1 skipped (resume), 1 failed" in res.output
    res = CliRunner().invoke(embed.command, [str(SAMPLE_SVS), "--model", str(DEMO / "span.onnx"),
                                             "--output", str(tmp_path / "emb")])
    assert res.exit_code == 0, res.output
    emb = np.load(tmp_path / "emb" / "CMU-1-Small-Region.npy")
    np.testing.assert_allclose(emb, np.load(out / "CMU-1-Small-Region" / "embedding.npy"), rtol=1e-5)


def _components4(cells: set[tuple[int, int]]) -> int:
    """4-connected components, counted independently of the code under test (union-find)."""
    parent = {c: c for c in cells}

    def find(c):
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c
    for a, b in cells:
        for nb in ((a + 1, b), (a, b + 1)):
            if nb in cells:
                parent[find(nb)] = find((a, b))
    return len({find(c) for c in cells})


@pytest.mark.parametrize("threshold", [None, 0.55])
def test_run_with_the_demo_segmentation_model(tmp_path, threshold):
    """Bundled slide -> demo encoder -> demo segmentation model (ONNX Runtime): probability heatmap
    on a fixed scale with its legend, classified tiles, merged regions, probabilities in the h5."""
    from PIL import Image
    from shapely.geometry import Point, shape

    from span_deploy.commands import run
    seg = DEMO / "segmentation"
    out = tmp_path / "out"
    args = [str(SAMPLE_SVS), "--model", str(seg / "span.onnx"), "--encoder", str(DEMO / "encoder.onnx"),
            "--output", str(out), "--no-progress"] + ([] if threshold is None else ["--threshold", str(threshold)])
    res = CliRunner().invoke(run.command, args)
    assert res.exit_code == 0, res.output
    d = out / "CMU-1-Small-Region"
    rec = json.loads((d / "result.json").read_text())
    pred = rec["prediction"]
    t = 0.5 if threshold is None else threshold
    assert rec["task"] == "segmentation" and pred["threshold"] == t and pred["num_patches"] == rec["n_tiles"] == 51
    probs = np.asarray(pred["patch_probabilities"], np.float32)
    with h5py.File(d / "CMU-1-Small-Region.h5") as f:
        np.testing.assert_array_equal(f["patch_probabilities"][()], probs)
        assert f.attrs["threshold"] == t
        grid = f["cords"][()] // 224
    tiles = json.loads((d / "tiles.geojson").read_text())["features"]
    names = [x["properties"]["classification"]["name"] for x in tiles]
    assert names == ["Tumor" if p >= t else "Other" for p in probs]
    np.testing.assert_allclose([x["properties"]["measurements"]["tumor_probability"] for x in tiles], probs)
    regions = json.loads((d / "regions.geojson").read_text())["features"]
    geoms = [shape(r["geometry"]) for r in regions]
    assert all(g.is_valid for g in geoms)
    positive = {tuple(c) for c, p in zip(grid.tolist(), probs) if p >= t}
    assert 0 < len(positive) < len(probs)
    assert len(regions) == _components4(positive)               # one annotation per connected region
    step0 = rec["geometry"]["patch_size_level0"]
    with h5py.File(d / "CMU-1-Small-Region.h5") as f:
        coords = f["coords"][()]
    for (x, y), p in zip(coords.tolist(), probs):
        inside = sum(g.contains(Point(x + step0 / 2, y + step0 / 2)) for g in geoms)
        assert inside == (1 if p >= t else 0)
    assert sum(r["properties"]["measurements"]["num_tiles"] for r in regions) == len(positive)
    img = Image.open(d / "heatmap.png")
    assert np.asarray(img)[-64:].min() < 100                                          # the legend strip
