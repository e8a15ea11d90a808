"""Per-patch scores -> PNG overlay on the slide thumbnail (pillow only)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_path

# A blue -> cyan -> yellow -> red ramp (perceptually ordered, readable on H&E and on black).
_ANCHORS = np.array([[48, 18, 59], [40, 140, 230], [60, 220, 130], [250, 210, 40], [200, 20, 10]], np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """values in [0, 1] -> (..., 3) uint8."""
    v = np.clip(np.asarray(values, np.float32), 0, 1) * (len(_ANCHORS) - 1)
    lo = np.floor(v).astype(np.int64).clip(0, len(_ANCHORS) - 2)
    t = (v - lo)[..., None]
    return (_ANCHORS[lo] * (1 - t) + _ANCHORS[lo + 1] * t + 0.5).astype(np.uint8)


def normalise_scores(scores: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; non-finite -> 0; a constant map -> 0.5."""
    s = np.asarray(scores, np.float64)
    s = np.where(np.isfinite(s), s, np.nan)
    lo, hi = np.nanmin(s), np.nanmax(s)
    if not np.isfinite(lo) or hi - lo < 1e-12:
        return np.full(s.shape, 0.5, np.float32)
    return np.nan_to_num((s - lo) / (hi - lo)).astype(np.float32)


def render_heatmap(thumbnail: Image.Image, thumb_downsample: float, grid: np.ndarray,
                   step0: int, scores: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Overlay: tile (i, j) of the grid covers level-0 [i*step0, (i+1)*step0) in x (same in y)."""
    grid = np.asarray(grid, np.int64)
    cols, rows = int(grid[:, 0].max()) + 1, int(grid[:, 1].max()) + 1
    over = np.zeros((rows, cols, 4), np.uint8)
    over[grid[:, 1], grid[:, 0], :3] = colormap(normalise_scores(scores))
    over[grid[:, 1], grid[:, 0], 3] = int(round(alpha * 255))
    size = (max(1, round(cols * step0 / thumb_downsample)), max(1, round(rows * step0 / thumb_downsample)))
    layer = Image.new("RGBA", thumbnail.size, (0, 0, 0, 0))
    layer.paste(Image.fromarray(over, "RGBA").resize(size, Image.Resampling.NEAREST), (0, 0))
    return Image.alpha_composite(thumbnail.convert("RGBA"), layer).convert("RGB")


def write_heatmap_png(path: str | os.PathLike, thumbnail: Image.Image, thumb_downsample: float,
                      grid: np.ndarray, step0: int, scores: np.ndarray, alpha: float = 0.45) -> Path:
    img = render_heatmap(thumbnail, thumb_downsample, grid, step0, scores, alpha)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
