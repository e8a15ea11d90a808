"""Thumbnail-based tissue mask.

Brightfield (H&E, IHC; white background): Otsu threshold on HSV saturation, then a small
closing (fill gaps inside tissue) and opening (drop specks).

Fluorescence (dark background, e.g. DAPI on black): a white-background detector would call the
whole black slide "background-like" or, worse, flag the noise. We detect it from the thumbnail:
if its mean brightness is below ``DARK_MEAN`` (0-255), it is treated as fluorescence and Otsu runs
on intensity (max over channels, since a single-channel stain such as DAPI lives in one channel)
instead of saturation. The larger closing there joins separate nuclei into a tissue region.
Guards (``min_level``) keep a blank slide from producing a mask out of noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

DARK_MEAN = 60.0          # mean gray of a thumbnail below this = dark background = fluorescence
MIN_SATURATION = 20       # Otsu on a blank slide picks noise; tissue is at least this saturated
MIN_INTENSITY = 10        # same for fluorescence intensity


@dataclass
class TissueMask:
    mask: np.ndarray          # (h, w) bool, True = tissue
    downsample: float         # level-0 px per mask px
    mode: str                 # "brightfield" | "fluorescence"
    threshold: float          # the threshold used on the channel the mode names
    thumbnail: Image.Image    # RGB, same size as mask (kept for the heatmap)


def otsu(values: np.ndarray) -> float:
    """Otsu threshold of uint8 values (returns t: foreground is values > t)."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0.0
    w0 = np.cumsum(hist)
    m = np.cumsum(hist * np.arange(256))
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m[-1] * w0 / total - m) ** 2 / (w0 * w1 / total)
    between[~np.isfinite(between)] = -1
    return float(np.argmax(between))


def _morph(mask: np.ndarray, close: int, open_: int) -> np.ndarray:
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    if close > 1:
        img = img.filter(ImageFilter.MaxFilter(close)).filter(ImageFilter.MinFilter(close))
    if open_ > 1:
        img = img.filter(ImageFilter.MinFilter(open_)).filter(ImageFilter.MaxFilter(open_))
    return np.asarray(img) > 127


def detect_tissue(thumbnail: Image.Image, downsample: float, mode: str = "auto") -> TissueMask:
    """Mask of tissue on an RGB thumbnail; mode is auto | brightfield | fluorescence."""
    rgb = np.asarray(thumbnail.convert("RGB"))
    if mode == "auto":
        mode = "fluorescence" if rgb.mean() < DARK_MEAN else "brightfield"
    if mode == "brightfield":
        chan = np.asarray(thumbnail.convert("RGB").convert("HSV"))[..., 1]
        t = max(otsu(chan), MIN_SATURATION)
        mask = _morph(chan > t, close=5, open_=3)
    elif mode == "fluorescence":
        chan = rgb.max(axis=2)
        t = max(otsu(chan), MIN_INTENSITY)
        mask = _morph(chan > t, close=9, open_=3)
    else:
        raise ValueError(f"tissue mode must be auto|brightfield|fluorescence, got {mode!r}")
    return TissueMask(mask, downsample, mode, t, thumbnail.convert("RGB"))
