"""Scan-time inference: encode tiles while the scanner is still producing them.

A scanner emits tiles for minutes; waiting for the whole slide before encoding wastes that time.
A ``SlideSession`` takes tiles as they arrive (uint8 RGB 224 x 224 at the model's resolution, with
their coordinates), encodes them in batches on a background thread, and on ``finish()`` encodes
the last partial batch and runs SPAN -- so the latency after the last tile is one small batch plus
the SPAN forward, not the whole slide's encoding. The queue between the producer and the encoder
is bounded (``max_pending_batches``): a producer faster than the encoder waits instead of holding
the whole slide's pixels in memory.

    with model.slide_session(tile_step=step0) as s:      # step0: level-0 px per tile
        for tile, (x, y) in scanner_tiles():             # level-0 top-left corners
            s.add_tile(tile, x, y)
        pred = s.finish()

The result equals the whole-slide path's for the same tiles (same features, same grid); per-patch
outputs follow the order the tiles were added.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError, SlideError, SpanDeployError
from .pipeline import tile_cell

if TYPE_CHECKING:
    from .api import Model, Prediction

TILE = 224
_STOP = object()


class SlideSession:
    """Feed tiles with ``add_tile`` / ``add_tiles``, then ``finish()`` once. One producer thread."""

    def __init__(self, encoder, model: "Model", tile_step: int = TILE, batch_size: int = 64,
                 max_pending_batches: int = 4):
        if int(tile_step) < 1 or int(batch_size) < 1 or int(max_pending_batches) < 1:
            raise ConfigError("tile_step, batch_size and max_pending_batches must be >= 1")
        self._encoder, self._model = encoder, model
        self.tile_step, self.batch_size = int(tile_step), int(batch_size)
        self._queue: queue.Queue = queue.Queue(maxsize=int(max_pending_batches))
        self._tiles: list[np.ndarray] = []
        self._grid: list[tuple[int, int]] = []
        self._cells: set[tuple[int, int]] = set()
        self._features: list[np.ndarray] = []
        self._grids: list[np.ndarray] = []
        self._error: BaseException | None = None
        self._closed = False
        self.tiles_added = 0
        self.tiles_encoded = 0
        self.encode_seconds = 0.0
        self._thread = threading.Thread(target=self._work, name="span-scan-encoder", daemon=True)
        self._thread.start()

    # --- producer side --------------------------------------------------------------------
    def add_tile(self, tile: np.ndarray, x: int, y: int) -> None:
        """One tile: uint8 (224, 224, 3) RGB at the model's resolution; (x, y) its top-left corner
        in the unit whose grid step is ``tile_step`` (level-0 px with tile_step = step0)."""
        self._check_open()
        tile = np.asarray(tile)
        cell = tile_cell(tile, x, y, self.tile_step)
        if cell in self._cells:
            raise SlideError(f"a tile at ({x}, {y}) was already added; each grid cell once")
        self._cells.add(cell)
        self._tiles.append(tile)
        self._grid.append(cell)
        self.tiles_added += 1
        if len(self._tiles) >= self.batch_size:
            self._flush()

    def add_tiles(self, tiles: np.ndarray, coords: np.ndarray) -> None:
        """Several tiles at once: (B, 224, 224, 3) uint8 and (B, 2) (x, y)."""
        coords = np.asarray(coords)
        if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(tiles):
            raise SlideError(f"add_tiles: {len(tiles)} tiles but coordinates of shape {coords.shape}; expected (B, 2)")
        for t, (x, y) in zip(tiles, coords):
            self.add_tile(t, int(x), int(y))

    def finish(self, threshold: float | None = None) -> "Prediction":
        """Encode what is left, run SPAN, return the Prediction (timings include
        ``finish_seconds``: from this call to the result, i.e. the latency after the last tile)."""
        t0 = time.perf_counter()
        self._check_open()
        self._flush()
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        if self._error is not None:
            raise self._error
        if not self._features:
            raise SlideError("no tiles were added to the slide session")
        feats = np.concatenate(self._features)
        cords = np.concatenate(self._grids).astype(np.int64) * TILE
        self._features, self._grids = [], []
        pred = self._model.predict(feats, cords, threshold=threshold)
        pred.timings.update({"finish_seconds": time.perf_counter() - t0, "encode_seconds": self.encode_seconds})
        return pred

    def cancel(self) -> None:
        """Stop the background encoder and drop everything (no result)."""
        if self._closed:
            return
        self._closed = True
        self._tiles, self._grid = [], []
        self._error = self._error or _Cancelled()
        self._queue.put(_STOP)
        self._thread.join()

    def __enter__(self) -> "SlideSession":
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()          # a no-op after finish()

    # --- internals --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise SpanDeployError("this slide session is finished or cancelled; open a new one per slide")
        if self._error is not None:
            raise self._error

    def _flush(self) -> None:
        if not self._tiles:
            return
        batch = (np.stack(self._tiles), np.asarray(self._grid, np.int64))
        self._tiles, self._grid = [], []
        self._queue.put(batch)            # blocks while max_pending_batches are waiting: bounded memory
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:   # keep draining so a producer never blocks on a dead worker
                continue
            tiles, grid = item
            try:
                t = time.perf_counter()
                f = np.asarray(self._encoder(tiles), np.float32)
                self.encode_seconds += time.perf_counter() - t
                if f.shape != (len(tiles), int(self._encoder.feature_dim)):
                    raise ConfigError(f"encoder returned {f.shape} for {len(tiles)} tiles")
                self._features.append(f)
                self._grids.append(grid)
                self.tiles_encoded += len(tiles)
            except BaseException as e:   # noqa: BLE001 - handed to the producer, re-raised there
                self._error = e


class _Cancelled(SpanDeployError):
    def __init__(self) -> None:
        super().__init__("this slide session was cancelled")
