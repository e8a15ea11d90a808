"""Per-patch scores -> PNG overlay on the slide thumbnail, with a title and a colour bar (pillow only).

Two scales: a fixed one (segmentation probabilities on 0-1, so two slides compare; the threshold
is marked on the bar) or min-max per slide (attention-like scores, whose absolute values mean
nothing; the bar says so).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_path

# A blue -> cyan -> yellow -> red ramp (perceptually ordered, readable on H&E and on black).
_ANCHORS = np.array([[48, 18, 59], [40, 140, 230], [60, 220, 130], [250, 210, 40], [200, 20, 10]], np.float32)
LEGEND_PX = 64          # height of the title + colour bar strip under the overlay


def colormap(values: np.ndarray) -> np.ndarray:
    """values in [0, 1] -> (..., 3) uint8."""
    v = np.clip(np.asarray(values, np.float32), 0, 1) * (len(_ANCHORS) - 1)
    lo = np.floor(v).astype(np.int64).clip(0, len(_ANCHORS) - 2)
    t = (v - lo)[..., None]
    return (_ANCHORS[lo] * (1 - t) + _ANCHORS[lo + 1] * t + 0.5).astype(np.uint8)


def normalise_scores(scores: np.ndarray, scale: tuple[float, float] | None = None) -> np.ndarray:
    """To [0, 1]: over the fixed ``scale`` (lo, hi), clipped; else min-max of the slide. Non-finite
    -> 0; a constant map without a fixed scale -> 0.5."""
    s = np.asarray(scores, np.float64)
    s = np.where(np.isfinite(s), s, np.nan)
    if scale is not None:
        lo, hi = scale
        return np.nan_to_num(np.clip((s - lo) / (hi - lo), 0, 1)).astype(np.float32)
    lo, hi = np.nanmin(s), np.nanmax(s)
    if not np.isfinite(lo) or hi - lo < 1e-12:
        return np.full(s.shape, 0.5, np.float32)
    return np.nan_to_num((s - lo) / (hi - lo)).astype(np.float32)


def _legend(width: int, title: str, ticks: list[tuple[float, str]], marker: float | None) -> Image.Image:
    """A white strip: the title, a horizontal colour bar, tick labels at bar positions in [0, 1]."""
    strip = Image.new("RGB", (width, LEGEND_PX), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    draw.text((6, 3), title, fill=(0, 0, 0), font=font)
    x0, x1, y0, y1 = 6, max(width - 6, 12), 22, 38
    ramp = colormap(np.linspace(0, 1, x1 - x0))[None].repeat(y1 - y0, 0)
    strip.paste(Image.fromarray(ramp, "RGB"), (x0, y0))
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=(0, 0, 0))
    for pos, label in ticks:
        x = int(round(x0 + pos * (x1 - x0 - 1)))
        draw.line((x, y1, x, y1 + 3), fill=(0, 0, 0))
        tw = draw.textlength(label, font=font)
        draw.text((min(max(x - tw / 2, 0), width - tw), y1 + 5), label, fill=(0, 0, 0), font=font)
    if marker is not None:
        x = int(round(x0 + marker * (x1 - x0 - 1)))
        draw.line((x, y0 - 3, x, y1 + 2), fill=(0, 0, 0), width=2)
    return strip


def render_heatmap(thumbnail: Image.Image, thumb_downsample: float, grid: np.ndarray, step0: int,
                   scores: np.ndarray, alpha: float = 0.45, scale: tuple[float, float] | None = None,
                   title: str | None = None, threshold: float | None = None) -> Image.Image:
    """Overlay: tile (i, j) of the grid covers level-0 [i*step0, (i+1)*step0) in x (same in y);
    under it the legend: ``title``, the colour bar over ``scale`` (or the slide's min-max)."""
    grid = np.asarray(grid, np.int64)
    cols, rows = int(grid[:, 0].max()) + 1, int(grid[:, 1].max()) + 1
    over = np.zeros((rows, cols, 4), np.uint8)
    over[grid[:, 1], grid[:, 0], :3] = colormap(normalise_scores(scores, scale))
    over[grid[:, 1], grid[:, 0], 3] = int(round(alpha * 255))
    size = (max(1, round(cols * step0 / thumb_downsample)), max(1, round(rows * step0 / thumb_downsample)))
    layer = Image.new("RGBA", thumbnail.size, (0, 0, 0, 0))
    layer.paste(Image.fromarray(over, "RGBA").resize(size, Image.Resampling.NEAREST), (0, 0))
    top = Image.alpha_composite(thumbnail.convert("RGBA"), layer).convert("RGB")
    s = np.asarray(scores, np.float64)
    s = s[np.isfinite(s)]
    if scale is not None:
        lo, hi = scale
        ticks = [(0.0, f"{lo:g}"), (0.5, f"{(lo + hi) / 2:g}"), (1.0, f"{hi:g}")]
        mark = None if threshold is None else float(np.clip((threshold - lo) / (hi - lo), 0, 1))
        if mark is not None:   # its label replaces any tick it would overlap
            ticks = [t for t in ticks if abs(t[0] - mark) > 0.12] + [(mark, f"threshold {threshold:g}")]
        title = title or f"score, fixed scale {lo:g}-{hi:g}"
    else:
        lo, hi = (float(s.min()), float(s.max())) if s.size else (0.0, 0.0)
        ticks = [(0.0, f"slide min {lo:.3g}"), (1.0, f"slide max {hi:.3g}")]
        mark = None
        title = title or "score, rescaled per slide (min-max): compare colours within this slide only"
    out = Image.new("RGB", (top.width, top.height + LEGEND_PX), (255, 255, 255))
    out.paste(top, (0, 0))
    out.paste(_legend(max(top.width, 160), title, ticks, mark).crop((0, 0, top.width, LEGEND_PX)), (0, top.height))
    return out


def write_heatmap_png(path: str | os.PathLike, thumbnail: Image.Image, thumb_downsample: float,
                      grid: np.ndarray, step0: int, scores: np.ndarray, alpha: float = 0.45,
                      scale: tuple[float, float] | None = None, title: str | None = None,
                      threshold: float | None = None) -> Path:
    img = render_heatmap(thumbnail, thumb_downsample, grid, step0, scores, alpha, scale, title, threshold)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
