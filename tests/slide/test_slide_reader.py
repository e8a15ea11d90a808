"""Reader, level choice, tissue and tiling on real slides and on generated pyramidal TIFFs."""
from __future__ import annotations

import os

import numpy as np
import pytest

from span_deploy.errors import SlideError
from span_deploy.slide import open_slide, tile_slide
from span_deploy.slide.reader import choose_level


def official_grid(cords: np.ndarray) -> np.ndarray:
    """What the official SPAN code does to raw coordinates: float32 c/224, minus min, truncate."""
    c = cords.astype(np.float32) / 224
    return np.trunc(c - c.min(0)).astype(np.int64)


def test_svs_brightfield_tiles(svs):
    with open_slide(svs) as r:
        c = r.choice
        assert (c.level, c.read_size, c.step0, c.mpp_source) == (0, 224, 224, "openslide.mpp-x")
        assert c.mpp0 == pytest.approx(0.499)
        g = tile_slide(r)
        assert g.mask.mode == "brightfield"
        assert r.grid_shape == (2220 // 224, 2967 // 224) == (9, 13)
        assert 35 <= len(g) <= 80                      # the tissue strip, not the white margin
        assert np.all(g.coords % 224 == 0) and np.array_equal(g.coords, g.grid * 224)
        assert np.array_equal(official_grid(g.cords), g.grid - g.grid.min(0))
        assert np.all(g.tissue_fraction >= 0.25)
        tiles = np.stack([r.read_tile(*xy) for xy in g.coords[:: max(1, len(g) // 10)]])
        m = tiles.reshape(-1, 3).mean(0)
        assert m.mean() < 215 and m[0] > m[1] and m[2] > m[1]   # pink/purple H&E, not white
        # a background tile (top-left corner) is near white and is not kept
        assert r.read_tile(0, 0).mean() > 230 and not (g.grid == 0).all(1).any()


def test_ndpi_fluorescence_tiles(ndpi):
    with open_slide(ndpi) as r:
        c = r.choice
        # 0.228 µm/px: level 1 (0.456) is 9% off 0.5, so read 246 px there and resize to 224
        assert (c.level, c.read_size, c.step0) == (1, 246, 491)
        assert c.mpp == pytest.approx(0.5, abs=1e-3)
        g = tile_slide(r)
        assert g.mask.mode == "fluorescence"
        assert 30 <= len(g) <= 72                       # 8 x 9 grid, section fills most of it
        assert np.all(g.coords % 491 == 0)
        assert np.array_equal(official_grid(g.cords), g.grid - g.grid.min(0))
        # level-0 coords are NOT 224-multiples here: /224 would distort the grid, hence `cords`
        assert not np.array_equal(official_grid(g.coords), g.grid - g.grid.min(0))
        tiles = np.stack([r.read_tile(*xy) for xy in g.coords])
        assert tiles.shape == (len(g), 224, 224, 3)
        b = tiles[..., 2].mean((1, 2))
        assert np.median(b) > 10 and tiles[..., 0].mean() < 5    # blue DAPI on black


@pytest.mark.parametrize("mpp0, ds, expect", [
    (0.25, (1, 4, 16), (0, 448, 448)),        # 40x, no 2x level: read 448 at level 0, resize
    (0.25, (1, 2, 4), (1, 224, 448)),         # 40x with a 20x level: read natively
    (0.5, (1, 4), (0, 224, 224)),
    (0.2282, (1, 2, 4), (1, 246, 491)),
    (1.0, (1, 4), (0, 112, 112)),             # 10x scan: upsample (warned by the effective mpp)
])
def test_choose_level(mpp0, ds, expect):
    c = choose_level(ds, mpp0, 0.5)
    assert (c.level, c.read_size, c.step0) == expect
    assert c.mpp == pytest.approx(c.step0 * mpp0 / 224)


def test_generated_tile_counts(make_slide):
    p = make_slide("a.tif", 12, 10, tissue_cells=(2, 3, 7, 7))
    with open_slide(p) as r:
        g = tile_slide(r)
        assert len(g) == 5 * 4
        assert set(map(tuple, g.grid)) == {(i, j) for i in range(2, 7) for j in range(3, 7)}
        assert np.all(g.tissue_fraction > 0.9)
        assert np.array_equal(official_grid(g.cords), g.grid - [2, 3])
        assert np.array_equal(r.read_tile(*g.coords[0]).reshape(-1, 3)[0], [205, 120, 175])


def test_generated_40x_slide(make_slide):
    # 0.25 µm/px with a 2x level: 448-px cells at level 0 = one 224 tile each, read at level 1
    p = make_slide("b.tif", 8, 6, tissue_cells=(1, 1, 4, 3), mpp=0.25, cell=448, downsamples=(1, 2, 8))
    with open_slide(p) as r:
        assert (r.choice.level, r.choice.read_size, r.step0) == (1, 224, 448)
        g = tile_slide(r)
        assert len(g) == 3 * 2 and np.all(g.coords % 448 == 0)
        assert np.array_equal(official_grid(g.cords), g.grid - g.grid.min(0))


def test_tissue_threshold(tmp_path):
    # tissue covering half of a column of cells: kept at 0.25, dropped at 0.75
    from tests.support.tiff_slides import write_synthetic_slide
    p = write_synthetic_slide(tmp_path / "half.tif", 224 * 8, 224 * 6,
                              (224 * 2, 224 * 2, 224 * 3 + 112, 224 * 4))
    with open_slide(p) as r:
        assert len(tile_slide(r, threshold=0.25)) == 2 * 2
        assert len(tile_slide(r, threshold=0.75)) == 1 * 2


def test_no_resolution_metadata(make_slide):
    p = make_slide("nores.tif", 6, 6, tissue_cells=(1, 1, 3, 3), mpp=None)
    with pytest.raises(SlideError, match="no resolution metadata.*--mpp"):
        open_slide(p)
    with open_slide(p, mpp=0.5) as r:
        assert r.choice.mpp_source == "override" and len(tile_slide(r)) == 4


def test_objective_power_fallback(tmp_path):
    # Aperio-style file with AppMag = 40 but no MPP: 10 / 40 = 0.25 µm/px -> 448-px steps
    from tests.support.tiff_slides import aperio_description, write_synthetic_slide
    p = write_synthetic_slide(tmp_path / "mag.svs", 448 * 8, 448 * 6, (448, 448, 448 * 4, 448 * 3),
                              mpp=None, downsamples=(1, 4, 16), description=aperio_description(40))
    with open_slide(p) as r:
        assert r.properties()["openslide.vendor"] == "aperio"
        assert (r.choice.mpp_source, r.choice.mpp0, r.step0) == ("objective-power", 0.25, 448)
        assert (r.choice.level, r.choice.read_size) == (0, 448)         # no 2x level: resize
        g = tile_slide(r)
        assert len(g) == 3 * 2 and np.all(g.coords % 448 == 0)
        assert np.array_equal(r.read_tile(*g.coords[0]).reshape(-1, 3)[0], [205, 120, 175])


def test_implausible_mpp(make_slide):
    p = make_slide("bogus.tif", 4, 4, tissue_cells=(1, 1, 3, 3), mpp=352.9)
    with pytest.raises(SlideError, match="implausible resolution.*--mpp"):
        open_slide(p)
    with open_slide(p, mpp=0.5) as r:
        assert r.step0 == 224


def test_no_tissue(make_slide):
    p = make_slide("blank.tif", 6, 6, tissue_cells=None)
    with open_slide(p) as r, pytest.raises(SlideError, match="no tissue found"):
        tile_slide(r)


def test_truncated_and_corrupt(make_slide, tmp_path):
    data = make_slide("t.tif", 8, 8, tissue_cells=(1, 1, 6, 6)).read_bytes()
    for frac in (0.3, 0.9, 0.97):
        bad = tmp_path / f"trunc{frac}.tif"
        bad.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(SlideError, match="trunc"):
            with open_slide(bad) as r:
                g = tile_slide(r)
                for xy in g.coords:
                    r.read_tile(*xy)
    garbage = tmp_path / "garbage.svs"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(SlideError, match="unsupported slide format"):
        open_slide(garbage)


def test_bad_paths(tmp_path):
    with pytest.raises(SlideError, match="not found"):
        open_slide(tmp_path / "missing.svs")
    with pytest.raises(SlideError, match="directory"):
        open_slide(tmp_path)
    (tmp_path / "empty.svs").write_bytes(b"")
    with pytest.raises(SlideError, match="empty"):
        open_slide(tmp_path / "empty.svs")
    import tifffile
    tifffile.imwrite(tmp_path / "strip.tif", np.zeros((300, 300, 3), np.uint8))
    with pytest.raises(SlideError, match="not tiled"):
        open_slide(tmp_path / "strip.tif")


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.7, 0.8, 0.95, 0.999])
def test_a_cut_svs_is_reported_as_truncated(svs, tmp_path, fraction):
    """A real SVS cut at several points: 'truncated', never 'strip TIFF' or a vendor guess."""
    data = svs.read_bytes()
    cut = tmp_path / "cut.svs"
    cut.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(SlideError, match="truncated"):
        open_slide(cut)
