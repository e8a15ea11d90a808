"""224-px tiles at the target resolution on the global grid, kept where there is tissue.

Coordinates (column 0 = x, column 1 = y, CLAM convention):
* ``grid``   (N, 2) int64: tile index (i, j);
* ``coords`` (N, 2) int64: level-0 px of the top-left corner = grid * step0 (read from here);
* ``cords``  (N, 2) int64: grid * 224, the raw coordinates the SPAN code expects: its
  normalisation ``trunc(float32(c) / 224 - min)`` gives back the grid exactly, whatever step0 is.
Rows are sorted by (y, x).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SlideError
from .reader import TILE, SlideReader
from .tissue import TissueMask, detect_tissue

DEFAULT_TISSUE_THRESHOLD = 0.25   # keep a tile if >= 25% of it is tissue
MASK_PX_PER_TILE = 8              # thumbnail resolution: ~8x8 mask px per tile
MAX_THUMBNAIL_SIDE = 2048       # caps mask memory on huge slides (then < 8 px per tile)


@dataclass
class TileGrid:
    grid: np.ndarray          # (N, 2) int64 tile index (x, y)
    step0: int                # level-0 px per tile
    tissue_fraction: np.ndarray  # (N,) float32
    mask: TissueMask

    @property
    def coords(self) -> np.ndarray:
        return self.grid * np.int64(self.step0)

    @property
    def cords(self) -> np.ndarray:
        return self.grid * np.int64(TILE)

    def __len__(self) -> int:
        return int(self.grid.shape[0])


def tissue_fractions(mask: np.ndarray, downsample: float, step0: int,
                     cols: int, rows: int) -> np.ndarray:
    """(rows, cols) fraction of tissue per grid tile, from a mask at ``downsample``."""
    h, w = mask.shape
    integral = np.zeros((h + 1, w + 1), np.int32)     # counts <= 2048^2 fit in int32
    integral[1:, 1:] = mask.astype(np.int32).cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)

    def edges(n: int, limit: int) -> np.ndarray:
        e = np.rint(np.arange(n + 1) * step0 / downsample).astype(np.int64)
        return np.clip(e, 0, limit)

    xe, ye = edges(cols, w), edges(rows, h)
    x0, x1 = xe[:-1][None, :], np.maximum(xe[1:], xe[:-1] + 1)[None, :]
    y0, y1 = ye[:-1][:, None], np.maximum(ye[1:], ye[:-1] + 1)[:, None]
    x1, y1 = np.minimum(x1, w), np.minimum(y1, h)
    s = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    return (s / area).astype(np.float32)


def tile_slide(reader: SlideReader, threshold: float = DEFAULT_TISSUE_THRESHOLD,
               tissue_mode: str = "auto") -> TileGrid:
    """Tissue tiles of a slide; raises SlideError if there are none."""
    step0 = reader.step0
    cols, rows = reader.grid_shape
    if cols == 0 or rows == 0:
        raise SlideError(f"slide is smaller than one {TILE}-px tile at {reader.choice.mpp:.3f} µm/px "
                         f"({reader.dimensions[0]}x{reader.dimensions[1]} level-0 px): {reader.path}. "
                         "Check the resolution (--mpp) or use a larger slide.")
    thumb, ds = reader.read_thumbnail(MAX_THUMBNAIL_SIDE, downsample=step0 / MASK_PX_PER_TILE)
    tm = detect_tissue(thumb, ds, tissue_mode)
    frac = tissue_fractions(tm.mask, ds, step0, cols, rows)
    j, i = np.nonzero(frac >= threshold)            # row-major: sorted by (y, x)
    if i.size == 0:
        raise SlideError(f"no tissue found ({tm.mode} detection, threshold {tm.threshold:.0f}, "
                         f"tile tissue fraction >= {threshold}): {reader.path}. "
                         "Check that the slide is not blank, or lower the tissue threshold.")
    grid = np.stack([i, j], axis=1).astype(np.int64)
    return TileGrid(grid, step0, frac[j, i], tm)
