"""Synthetic tissue slides: exact size, uniqueness, determinism, tissue-like geometry."""
import numpy as np
import pytest

from span_deploy.bench.tissue_tokens import PATCH_PX, describe_geometry, describe_stages, tissue_slide


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 25_000])
def test_exact_count_unique_on_grid(n):
    coords, feats = tissue_slide(n, seed=3, feat_dim=16)
    assert coords.shape == (n, 2) and coords.dtype == np.int64
    assert feats.shape == (n, 16) and feats.dtype == np.float32
    assert np.unique(coords, axis=0).shape[0] == n
    assert np.all(coords % PATCH_PX == 0)
    assert coords.min() > 0                      # offset like a real slide
    g = describe_geometry(coords)
    assert (g["unique_cells"], g["duplicates"], g["off_grid"]) == (n, 0, 0)


def test_deterministic_in_seed():
    a = tissue_slide(5000, seed=11, feat_dim=8)
    b = tissue_slide(5000, seed=11, feat_dim=8)
    c = tissue_slide(5000, seed=12, feat_dim=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("seed", range(6))
def test_tissue_geometry_is_not_a_rectangle(seed):
    coords, _ = tissue_slide(20_000, seed=seed, feat_dim=1)
    g = describe_geometry(coords)
    assert 0.25 < g["occupancy"] < 0.85          # real tissue bbox occupancy, not 1.0
    assert g["holes"] >= 1 or g["components"] >= 2
    assert 7.0 < g["mean_neighbours_3x3"] < 8.0  # mostly solid tissue, with rims
    assert g["width_cells"] * g["height_cells"] == g["bbox_cells"] > 20_000


def test_features_standard_normal_and_distinct_rows():
    _, small = tissue_slide(500, seed=0, feat_dim=64)            # direct draws
    _, big = tissue_slide(20_000, seed=0, feat_dim=1024)          # two-pool mixture
    for f in (small, big):
        assert abs(float(f.mean())) < 0.02
        assert abs(float(f.std()) - 1.0) < 0.02
    assert np.unique(big, axis=0).shape[0] == 20_000


def test_describe_geometry_by_hand():
    ring = np.array([(x, y) for x in range(3) for y in range(3) if (x, y) != (1, 1)]) * PATCH_PX + 224 * 10
    g = describe_geometry(ring)
    assert (g["width_cells"], g["height_cells"], g["unique_cells"]) == (3, 3, 8)
    assert g["occupancy"] == pytest.approx(8 / 9)
    assert (g["components"], g["holes"], g["hole_cells"]) == (1, 1, 1)
    assert g["mean_neighbours_3x3"] == 3.0       # corners see 2, edge cells 4
    assert g["min_cell"] == [10, 10] and g["max_cell"] == [12, 12]
    diagonal = np.array([[0, 0], [224, 224]])
    assert describe_geometry(diagonal)["components"] == 1           # 8-connected tissue
    apart = np.array([[0, 0], [448, 0], [0, 224]])
    assert describe_geometry(apart)["components"] == 2
    # dual connectivity: an 8-connected diamond encloses its centre (background is 4-connected)
    diamond = np.array([(0, 1), (1, 0), (2, 1), (1, 2)]) * PATCH_PX
    assert (describe_geometry(diamond)["components"], describe_geometry(diamond)["holes"]) == (1, 1)
    c_shape = ring[~((ring[:, 0] == 224 * 12) & (ring[:, 1] == 224 * 11))]    # ring opened on the right
    assert describe_geometry(c_shape)["holes"] == 0
    dup = np.array([[0, 0], [0, 0], [300, 0]])   # 300 px: cell 1, off the grid
    g = describe_geometry(dup)
    assert (g["duplicates"], g["off_grid"]) == (1, 1)


def test_describe_stages_hook():
    rows = describe_stages([1000, 250, 50], [np.array([8, 8, 4]), 5.5, None], n_tokens=900)
    assert [r["rows"] for r in rows] == [1000, 250, 50]
    assert rows[0]["shrink"] == pytest.approx(0.9) and rows[0]["pad_fraction"] == pytest.approx(0.1)
    assert rows[1]["shrink"] == 4.0 and rows[2]["shrink"] == 5.0
    assert (rows[0]["mean_neighbours"], rows[0]["max_neighbours"]) == (20 / 3, 8.0)
    assert rows[1]["mean_neighbours"] == 5.5 and "max_neighbours" not in rows[1]
    assert "mean_neighbours" not in rows[2]
    with pytest.raises(ValueError):
        describe_stages([10, 5], [1.0])
