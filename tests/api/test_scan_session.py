"""Scan-time sessions: tiles fed as a scanner would (any order, in bursts) give the whole-slide
result; bad tiles, misuse and encoder failures are clear errors and never hang."""
from __future__ import annotations

import numpy as np
import pytest

import span_deploy
from span_deploy.errors import ConfigError, SlideError, SpanDeployError
from span_deploy.slide import SlideReader, tile_slide
from tests.cases import REPO, ops_library_or_skip

DEMO = REPO / "samples" / "demo"
SLIDE = REPO / "samples" / "data" / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="module")
def demo():
    ops_library_or_skip()
    return span_deploy.load(DEMO / "span.onnx", threads=2)


@pytest.fixture(scope="module")
def scanned():
    """The bundled slide's tissue tiles as a scanner would emit them: pixels + level-0 corners."""
    with SlideReader(SLIDE) as r:
        grid = tile_slide(r)
        tiles = np.stack([r.read_tile(int(x), int(y)) for x, y in grid.coords])
        return tiles, grid.coords.copy(), r.step0


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_session_equals_the_whole_slide_path(demo, scanned, tmp_path, batch_size):
    tiles, coords, step0 = scanned
    rec = demo.process_slide(SLIDE, tmp_path / str(batch_size))
    order = np.random.default_rng(batch_size).permutation(len(coords))
    with demo.slide_session(tile_step=step0, batch_size=batch_size, max_pending_batches=2) as s:
        for i in order:
            s.add_tile(tiles[i], *coords[i])
        pred = s.finish()
    np.testing.assert_allclose(pred.logits, rec["logits"], atol=1e-5)
    np.testing.assert_allclose(pred.slide_embedding, np.load(rec["outputs"]["embedding"]), atol=1e-5)
    # per-patch outputs follow the order the tiles were added
    whole = demo.predict(*_features(rec), coords_step=224)
    np.testing.assert_allclose(pred.patch_scores, whole.patch_scores[order], atol=1e-5)
    assert pred.timings["finish_seconds"] > 0 and s.tiles_encoded == len(coords)


def _features(rec):
    import h5py
    with h5py.File(rec["outputs"]["features"]) as f:
        return f["feats"][()], f["cords"][()]


def test_add_tiles_in_bursts(demo, scanned):
    tiles, coords, step0 = scanned
    s = demo.slide_session(tile_step=step0, batch_size=16)
    for a in range(0, len(coords), 10):
        s.add_tiles(tiles[a:a + 10], coords[a:a + 10])
    ref = demo.embed_slide(SLIDE)
    np.testing.assert_allclose(s.finish().slide_embedding, ref, atol=1e-5)


def test_bad_tiles_and_misuse_are_clear(demo, scanned):
    tiles, coords, step0 = scanned
    s = demo.slide_session(tile_step=step0)
    with pytest.raises(SlideError, match="expected uint8"):
        s.add_tile(tiles[0].astype(np.float32), *coords[0])
    with pytest.raises(SlideError, match="expected uint8"):
        s.add_tile(tiles[0][:100], *coords[0])
    with pytest.raises(SlideError, match="not a non-negative multiple of tile_step"):
        s.add_tile(tiles[0], coords[0][0] + 1, coords[0][1])
    s.add_tile(tiles[0], *coords[0])
    with pytest.raises(SlideError, match="already added"):
        s.add_tile(tiles[1], *coords[0])
    s.finish()
    with pytest.raises(SpanDeployError, match="finished or cancelled"):
        s.finish()
    with pytest.raises(SlideError, match="no tiles"):
        demo.slide_session().finish()
    with pytest.raises(ConfigError):
        demo.slide_session(tile_step=0)


class FailingEncoder:
    """A user's encoder that breaks mid-scan (the session must surface it, not hang)."""
    name = "failing"
    feature_dim = 512

    def __init__(self):
        self.calls = 0

    def __call__(self, tiles):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("encoder blew up")
        return np.zeros((len(tiles), 512), np.float32)


def test_an_encoder_failure_reaches_the_producer_and_nothing_hangs(demo, scanned):
    from span_deploy.scan import SlideSession
    tiles, coords, step0 = scanned
    s = SlideSession(FailingEncoder(), demo, tile_step=step0, batch_size=4, max_pending_batches=1)
    with pytest.raises(RuntimeError, match="encoder blew up"):
        for i in range(len(coords)):
            s.add_tile(tiles[i], *coords[i])
        s.finish()
    s.cancel()          # idempotent, returns


def test_cancel_drops_the_session(demo, scanned):
    tiles, coords, step0 = scanned
    s = demo.slide_session(tile_step=step0, batch_size=4)
    for i in range(10):
        s.add_tile(tiles[i], *coords[i])
    s.cancel()
    with pytest.raises(SpanDeployError, match="finished or cancelled"):
        s.add_tile(tiles[11], *coords[11])
