"""Atomic writes, features h5, heatmap, GeoJSON and result files."""
from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
from PIL import Image

from span_deploy.outputs.atomic import atomic_path, atomic_write_text
from span_deploy.outputs.geojson import write_tiles_geojson
from span_deploy.outputs.h5 import read_features_h5, write_features_h5
from span_deploy.outputs.heatmap import LEGEND_PX, colormap, normalise_scores, render_heatmap
from span_deploy.outputs.results import write_summary_csv


def test_atomic_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "x.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert not target.exists() and list(target.parent.iterdir()) == []
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_h5_failure_mid_write_leaves_no_file(tmp_path):
    target = tmp_path / "features.h5"
    f, c = np.ones((3, 4), np.float32), np.zeros((3, 2), np.int64)
    with pytest.raises(TypeError):           # an attribute h5py cannot store, after data written
        write_features_h5(target, f, c, c, {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_h5_both_namings(tmp_path):
    feats = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    grid = np.array([[0, 0], [1, 0], [2, 1], [0, 3], [5, 5]], np.int64)
    p = write_features_h5(tmp_path / "f.h5", feats, grid * 491, grid * 224,
                          {"patch_size_level0": 491, "mpp": 0.5})
    with h5py.File(p) as f:
        assert f["feats"].id == f["features"].id                 # hard link, one copy
        np.testing.assert_array_equal(f["feats"][()], feats)
        np.testing.assert_array_equal(f["cords"][()], grid * 224)
        np.testing.assert_array_equal(f["coords"][()], grid * 491)
        assert f["coords"].attrs["patch_size_level0"] == 491 and f["coords"].attrs["coords_order"] == "xy"
    d = read_features_h5(p)
    assert d["features"].shape == (5, 8) and d["attrs"]["patch_size"] == 224


def test_heatmap_colours_tiles():
    thumb = Image.new("RGB", (40, 30), (255, 255, 255))
    grid = np.array([[0, 0], [3, 2]])
    img = np.asarray(render_heatmap(thumb, 10.0, grid, 100, np.array([0.0, 1.0]), alpha=1.0))
    assert img.shape == (30 + LEGEND_PX, 40, 3)                          # overlay + legend strip
    np.testing.assert_array_equal(img[5, 5], colormap(np.array(0.0)))     # tile (0,0): low
    np.testing.assert_array_equal(img[25, 35], colormap(np.array(1.0)))   # tile (3,2): high
    np.testing.assert_array_equal(img[15, 15], [255, 255, 255])           # no tile


def test_geojson(tmp_path):
    p = write_tiles_geojson(tmp_path / "t.geojson", np.array([[448, 896]]), 448, np.array([0.25]))
    fc = json.loads(p.read_text())
    assert fc["type"] == "FeatureCollection"
    f = fc["features"][0]
    assert f["geometry"]["coordinates"] == [[[448, 896], [896, 896], [896, 1344], [448, 1344], [448, 896]]]
    assert f["properties"]["measurements"] == {"span_score": 0.25}


def test_summary_csv(tmp_path):
    p = write_summary_csv(tmp_path / "s.csv", [
        {"slide": "a.svs", "status": "ok", "n_tiles": 3, "prediction": {"label": "tumor"}, "seconds": 1.0},
        {"slide": "b.svs", "status": "failed", "error_type": "SlideError", "error": "no tissue"}])
    rows = list(csv.DictReader(p.open()))
    assert rows[0]["prediction"] == "tumor" and rows[0]["seconds"] == "1.00"
    assert rows[1]["status"] == "failed" and rows[1]["error"] == "no tissue"


def test_heatmap_fixed_scale_is_comparable_across_slides():
    """A fixed 0-1 scale colours a probability the same on every slide; min-max does not."""
    a, b = np.array([0.1, 0.3]), np.array([0.3, 0.9])
    np.testing.assert_allclose(normalise_scores(a, (0, 1))[1], normalise_scores(b, (0, 1))[0])
    assert normalise_scores(a)[1] != normalise_scores(b)[0]
    np.testing.assert_allclose(normalise_scores(np.array([-1.0, 2.0]), (0, 1)), [0, 1])    # clipped
    thumb = Image.new("RGB", (200, 30), (255, 255, 255))
    img = np.asarray(render_heatmap(thumb, 10.0, np.array([[0, 0]]), 100, np.array([0.3]), alpha=1.0,
                                    scale=(0.0, 1.0), title="P(tumour)", threshold=0.5))
    np.testing.assert_array_equal(img[5, 5], colormap(np.array(0.3)))
    strip = img[30:]
    assert strip.shape[0] == LEGEND_PX and (strip < 128).any()            # bar and text drawn
    bar = strip[30, 6:194]                                              # the colour bar row
    assert np.abs(bar[1].astype(int) - colormap(np.array(0.0)).astype(int)).max() <= 8   # low end left
    assert np.abs(bar[-2].astype(int) - colormap(np.array(1.0)).astype(int)).max() <= 8


def test_tiles_carry_a_class_at_the_threshold(tmp_path):
    p = write_tiles_geojson(tmp_path / "t.geojson", np.array([[0, 0], [448, 0]]), 448, np.array([0.7, 0.2]),
                            measurement="tumor_probability", threshold=0.5)
    f = json.loads(p.read_text())["features"]
    assert [x["properties"]["classification"]["name"] for x in f] == ["Tumor", "Other"]
    assert f[0]["properties"]["measurements"] == {"tumor_probability": 0.7}
    assert all(len(x["properties"]["classification"]["color"]) == 3 for x in f)


def test_regions_merge_tiles_keep_holes_and_split_at_corners(tmp_path):
    from shapely.geometry import shape

    from span_deploy.outputs.geojson import write_regions_geojson
    ring = [(a, b) for a in range(3) for b in range(3) if (a, b) != (1, 1)]     # a 3x3 ring: one hole
    diag = [(5, 5), (6, 6)]                                                      # touch at a corner only
    grid = np.array(ring + diag + [(1, 1)])
    probs = np.array([0.9] * len(ring) + [0.8, 0.7] + [0.1])                     # the centre is negative
    p = write_regions_geojson(tmp_path / "r.geojson", grid, grid * 100, 100, probs, 0.5, mpp=0.5)
    feats = json.loads(p.read_text())["features"]
    assert len(feats) == 3
    geoms = [shape(f["geometry"]) for f in feats]
    assert all(g.is_valid and g.geom_type == "Polygon" for g in geoms)
    assert len(geoms[0].interiors) == 1 and geoms[0].area == 8 * 100 * 100
    assert [f["properties"]["measurements"]["num_tiles"] for f in feats] == [8, 1, 1]
    assert feats[0]["properties"]["measurements"]["area_mm2"] == pytest.approx(8 * (100 * 0.5e-3) ** 2)
    assert all(f["properties"]["objectType"] == "annotation" for f in feats)


def test_clam_patch_level_only_where_clam_reads_the_right_footprint():
    from span_deploy.outputs.h5 import clam_level_attrs
    from span_deploy.slide.reader import choose_level

    # 0.25 µm/px scan, 0.5 target, level 1 at downsample 2: 224 px there = 448 level-0 px, exact
    c = choose_level((1.0, 2.0, 8.0), 0.25, 0.5)
    a = clam_level_attrs(c.level, c.read_size, c.step0, c.downsample)
    assert a == {"read_level": 1, "read_size": 224, "patch_level": 1}
    assert a["patch_level"] == 1 and 224 * 2.0 == c.step0
    # the NDPI case: 0.2275 µm/px, step0 491, read 246 px at level 1 and resized: no patch_level
    c = choose_level((1.0, 2.0, 4.0), 0.2275, 0.5)
    a = clam_level_attrs(c.level, c.read_size, c.step0, c.downsample)
    assert c.step0 == 492 and a == {"read_level": 1, "read_size": 246}


def test_ndpi_features_h5_has_no_misleading_patch_level(ndpi, tmp_path):
    import subprocess
    import sys

    from tests.cases import REPO
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "span_deploy.cli", "run", str(ndpi), "--model",
                        str(REPO / "samples/demo/span.onnx"), "--encoder", str(REPO / "samples/demo/encoder.onnx"),
                        "-o", str(out), "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (h5,) = out.glob("*/*.h5")
    with h5py.File(h5) as f:
        a = dict(f["coords"].attrs)
    # CLAM's footprint patch_size * downsample[patch_level] must equal the real one, or be absent
    assert "patch_level" not in a or 224 * 2 ** a["patch_level"] == a["patch_size_level0"]
    assert a["read_size"] * 2 ** a["read_level"] == pytest.approx(a["patch_size_level0"], abs=2)
