"""Generate pyramidal tiled TIFFs of controlled size for tests and benchmarks.

Levels are written in the main IFD chain (what OpenSlide's generic-tiff reader walks) and the
resolution tags are in centimetres, so OpenSlide reports ``openslide.mpp-x``. Tissue is a
flat H&E-pink rectangle on white, placed on whole cells of the 224-px grid at ``mpp`` so the
expected tile count is exact. Generation streams 256-px tiles: memory stays small.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

TISSUE_RGB = (205, 120, 175)
BACKGROUND_RGB = (242, 242, 242)


def write_synthetic_slide(path: str | Path, width: int, height: int,
                          tissue: tuple[int, int, int, int] | None,
                          mpp: float | None = 0.5, downsamples: tuple[int, ...] = (1, 4, 16, 64),
                          tile: int = 256, description: str | None = None) -> Path:
    """Write a slide; ``tissue`` = (x0, y0, x1, y1) level-0 px (None: blank slide).

    ``description``: level 0's ImageDescription, e.g. ``aperio_description(40)`` makes OpenSlide
    read it as Aperio (objective power from AppMag, mpp only if given).
    """
    import tifffile
    path = Path(path)

    def tiles(w: int, h: int, ds: int) -> Iterator[np.ndarray]:
        rect = None if tissue is None else [v / ds for v in tissue]
        for ty in range(0, h, tile):
            for tx in range(0, w, tile):
                t = np.empty((tile, tile, 3), np.uint8)
                t[:] = BACKGROUND_RGB
                if rect is not None:
                    x0 = int(np.clip(round(rect[0]) - tx, 0, tile))
                    x1 = int(np.clip(round(rect[2]) - tx, 0, tile))
                    y0 = int(np.clip(round(rect[1]) - ty, 0, tile))
                    y1 = int(np.clip(round(rect[3]) - ty, 0, tile))
                    t[y0:y1, x0:x1] = TISSUE_RGB
                yield t

    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2 ** 31) as tw:
        for k, ds in enumerate(downsamples):
            w, h = max(1, width // ds), max(1, height // ds)
            if k and max(w, h) < tile:
                break
            extra = {}
            if mpp is not None:   # pixels per centimetre
                extra = dict(resolution=(1e4 / (mpp * ds), 1e4 / (mpp * ds)), resolutionunit="CENTIMETER")
            if k == 0 and description is not None:
                extra.update(description=description, metadata=None)
            tw.write(tiles(w, h, ds), shape=(h, w, 3), dtype=np.uint8, tile=(tile, tile),
                     compression="zlib", photometric="rgb", subfiletype=1 if k else 0, **extra)
    return path


def aperio_description(app_mag: float, mpp: float | None = None) -> str:
    """A minimal Aperio ImageDescription (what OpenSlide's aperio reader keys on)."""
    return (f"Aperio Image Library v10.0.0\r\nsynthetic |AppMag = {app_mag:g}"
            + (f"|MPP = {mpp:g}" if mpp else ""))
