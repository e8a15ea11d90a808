"""Open a whole-slide image with OpenSlide and read 224-px tiles at a target resolution.

Resolution: the level-0 µm/px comes from ``openslide.mpp-x`` (falls back to
``10 / openslide.objective-power``, the usual 20x ≈ 0.5 µm/px convention), or from an explicit
``mpp`` override; with none of these we refuse, because a wrong scale silently changes what
the encoder sees.

Grid: tile (i, j) has its top-left corner at level-0 px ``(i * step0, j * step0)`` where
``step0 = round(224 * target_mpp / mpp0)`` is the level-0 size of one 224-px tile at the target
resolution. Column 0 is x, column 1 is y (CLAM / TRIDENT convention).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from ..errors import SlideError
from ..resolution import DEFAULT_TARGET_MPP, MPP_PLAUSIBLE

TILE = 224
DEFAULT_MPP_TOLERANCE = 0.05      # read a level as-is if its mpp is within 5% of the target


def _fail(path: Path | str, what: str, todo: str) -> SlideError:
    return SlideError(f"{what}: {path}. {todo}")


@dataclass(frozen=True)
class LevelChoice:
    level: int            # pyramid level read from
    read_size: int        # side of the region read at that level (resized to 224 if != 224)
    step0: int            # level-0 px per 224-px tile
    mpp0: float           # level-0 µm/px
    mpp: float            # effective µm/px of the 224-px tiles (step0 * mpp0 / 224)
    mpp_source: str       # "openslide.mpp-x" | "objective-power" | "override"
    downsample: float = 1.0   # of that level (level-0 px per level px)


def choose_level(downsamples: tuple[float, ...], mpp0: float, target_mpp: float,
                 tolerance: float = DEFAULT_MPP_TOLERANCE, mpp_source: str = "") -> LevelChoice:
    """The coarsest level that is not coarser than the target (never upsample beyond tolerance)."""
    scale = target_mpp / mpp0                    # level-0 px per target px
    step0 = max(1, int(round(TILE * scale)))
    best = 0
    for lv, ds in enumerate(downsamples):
        if ds <= scale * (1 + tolerance) and ds >= downsamples[best]:
            best = lv
    ds = downsamples[best]
    # Within tolerance: read 224 px natively (no resampling); else read the covering region.
    read = TILE if abs(ds / scale - 1) <= tolerance else max(1, int(round(step0 / ds)))
    return LevelChoice(best, read, step0, mpp0, step0 * mpp0 / TILE, mpp_source, float(ds))


class SlideReader:
    """A thread-safe (OpenSlide handles are) reader of grid tiles; use as a context manager."""

    def __init__(self, path: str | os.PathLike, target_mpp: float = DEFAULT_TARGET_MPP,
                 mpp: float | None = None, tolerance: float = DEFAULT_MPP_TOLERANCE):
        self.path = Path(path)
        self.slide = _open(self.path)
        mpp0, source = _level0_mpp(self.slide, self.path, mpp)
        if source != "override" and not MPP_PLAUSIBLE[0] <= mpp0 <= MPP_PLAUSIBLE[1]:
            self.slide.close()
            raise _fail(self.path, f"implausible resolution in the slide metadata ({mpp0:g} µm/px "
                        f"from {source}; scanners give {MPP_PLAUSIBLE[0]}-{MPP_PLAUSIBLE[1]})",
                        "Pass the real level-0 microns per pixel with --mpp.")
        self.choice = choose_level(tuple(self.slide.level_downsamples), mpp0, target_mpp,
                                   tolerance, source)
        self.target_mpp = target_mpp
        self.dimensions: tuple[int, int] = self.slide.dimensions

    # --- geometry -------------------------------------------------------------------------
    @property
    def step0(self) -> int:
        return self.choice.step0

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(columns, rows) of whole tiles inside level 0 (partial edge tiles are dropped)."""
        w, h = self.dimensions
        return w // self.step0, h // self.step0

    def properties(self) -> dict[str, str]:
        return dict(self.slide.properties)

    # --- pixels ---------------------------------------------------------------------------
    def read_tile(self, x0: int, y0: int) -> np.ndarray:
        """(224, 224, 3) uint8 RGB of the tile whose level-0 top-left is (x0, y0)."""
        c = self.choice
        try:
            img = self.slide.read_region((int(x0), int(y0)), c.level, (c.read_size, c.read_size))
        except openslide.OpenSlideError as e:
            raise _fail(self.path, f"cannot decode the tile at level-0 ({x0}, {y0}) ({e})",
                        "The file is probably truncated or corrupt; re-export or re-copy it.") from e
        if c.read_size != TILE:
            img = img.resize((TILE, TILE), Image.Resampling.BILINEAR, reducing_gap=None)
        return np.asarray(pil_to_rgb(img))

    def read_thumbnail(self, max_side: int, downsample: float | None = None) -> tuple[Image.Image, float]:
        """An RGB thumbnail and its downsample (level-0 px per thumbnail px).

        Read strip by strip from the best level, so memory stays bounded even when a slide has
        no low-resolution level (openslide's get_thumbnail reads the whole level at once).
        """
        w, h = self.dimensions
        ds = max(downsample or 1.0, max(w, h) / max_side, 1.0)
        tw, th = max(1, int(w / ds)), max(1, int(h / ds))
        lv = self.slide.get_best_level_for_downsample(ds)
        lds = self.slide.level_downsamples[lv]
        lw, lh = self.slide.level_dimensions[lv]
        out = Image.new("RGB", (tw, th), (255, 255, 255))
        rows = max(1, int(2 ** 22 // max(lw, 1)))     # ~4 Mpx (16 MB RGBA) per strip
        rows = max(rows, int(math.ceil(ds / lds)) * 2)
        y = 0
        try:
            while y < lh:
                n = min(rows, lh - y)
                strip = self.slide.read_region((0, int(y * lds)), lv, (lw, n))
                t0, t1 = int(y * lds / ds), min(th, int(math.ceil((y + n) * lds / ds)))
                if t1 > t0:
                    part = pil_to_rgb(strip).resize((tw, t1 - t0), Image.Resampling.BOX)
                    out.paste(part, (0, t0))
                y += n
        except openslide.OpenSlideError as e:
            raise _fail(self.path, f"cannot decode the slide ({e})",
                        "The file is probably truncated or corrupt; re-export or re-copy it.") from e
        return out, w / tw

    def close(self) -> None:
        self.slide.close()

    def __enter__(self) -> "SlideReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pil_to_rgb(img: Image.Image) -> Image.Image:
    """OpenSlide's (un-premultiplied) RGBA onto white: transparent = no data = background.

    PIL ops rather than numpy: ~3x faster per tile, which matters when reading competes with
    the encoder for the same CPU cores.
    """
    if img.mode != "RGBA":
        return img.convert("RGB")
    if img.getchannel("A").getextrema()[0] == 255:
        return img.convert("RGB")
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, img).convert("RGB")


def _open(path: Path) -> openslide.OpenSlide:
    if not path.exists():
        raise _fail(path, "slide not found", "Check the path (quote names with spaces or parentheses).")
    if path.is_dir():
        raise _fail(path, "is a directory, not a slide file",
                    "Pass the slide file itself (for MIRAX pass the .mrxs file).")
    if not os.access(path, os.R_OK):
        raise _fail(path, "slide is not readable (permission denied)", "Fix the file permissions.")
    if path.stat().st_size == 0:
        raise _fail(path, "slide file is empty", "Re-copy the slide; the transfer probably failed.")
    try:
        return openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError as e:
        why = _diagnose_tiff(path)
        if why:
            raise _fail(path, f"OpenSlide cannot read this TIFF: {why}", _TIFF_TODO) from e
        raise _fail(path, "unsupported slide format",
                    "OpenSlide reads Aperio .svs, Hamamatsu .ndpi/.vms, Leica .scn, MIRAX .mrxs, "
                    "Philips TIFF, Sakura, Trestle, Ventana, DICOM and tiled pyramidal TIFF; "
                    "convert the slide to a tiled pyramidal TIFF.") from e
    except openslide.OpenSlideError as e:
        raise _fail(path, f"slide is corrupt or truncated ({e})",
                    "Re-copy or re-export the slide.") from e
    except OSError as e:
        raise _fail(path, f"cannot read the slide ({e})", "Check the file and its permissions.") from e


_TIFF_TODO = ("Re-copy the file if it is truncated; otherwise convert it to a tiled pyramidal TIFF "
              "(e.g. vips tiffsave in.tif out.tif --tile --pyramid --compression jpeg).")


def _diagnose_tiff(path: Path) -> str | None:
    """Why a TIFF-looking file was refused (truncated, untiled), or None if not a TIFF."""
    with open(path, "rb") as f:
        head = f.read(16)
    magic = head[:4]
    if magic not in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return None
    import logging

    import tifffile
    size = path.stat().st_size
    order = "little" if magic[:2] == b"II" else "big"
    first = int.from_bytes(head[4:8] if magic[2:] in (b"*\0", b"\0*") else head[8:16], order)
    if first >= size:   # SVS and many writers put the directories after the data: cut files lose them first
        return f"truncated (the first image directory is at byte {first}, the file has {size} bytes)"

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    log = logging.getLogger("tifffile")
    collect = Collect()
    old_propagate, log.propagate = log.propagate, False      # we report the problem ourselves
    log.addHandler(collect)
    try:
        with tifffile.TiffFile(path) as tf:
            pages = list(tf.pages)
            for pg in pages:
                ends = [o + n for o, n in zip(pg.dataoffsets, pg.databytecounts)]
                if ends and max(ends) > size:
                    return f"truncated (image data runs to byte {max(ends)}, file has {size})"
            if any("offset" in m for m in collect.messages):       # the directory chain is cut
                return f"truncated (an image directory lies past the end of the file's {size} bytes)"
            if not any(pg.is_tiled for pg in pages):
                return "not tiled (strip TIFF); OpenSlide needs a tiled TIFF"
    except Exception as e:        # tifffile cannot parse it either: the IFD chain is broken
        return f"corrupt or truncated ({type(e).__name__}: {str(e)[:120]})"
    finally:
        log.removeHandler(collect)
        log.propagate = old_propagate
    return "no OpenSlide vendor format matched (unusual or corrupt TIFF)"


def _level0_mpp(slide: openslide.OpenSlide, path: Path, override: float | None) -> tuple[float, str]:
    if override is not None:
        if not override > 0:
            raise _fail(path, f"mpp override must be > 0, got {override}", "Pass e.g. --mpp 0.25.")
        return float(override), "override"
    props = slide.properties
    for key in (openslide.PROPERTY_NAME_MPP_X, openslide.PROPERTY_NAME_MPP_Y):
        try:
            v = float(props.get(key, ""))
            if v > 0 and math.isfinite(v):
                return v, key
        except ValueError:
            pass
    try:
        power = float(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER, ""))
        if power > 0:
            return 10.0 / power, "objective-power"   # 20x -> 0.5 µm/px, 40x -> 0.25
    except ValueError:
        pass
    raise _fail(path, "slide has no resolution metadata (no openslide.mpp-x, no objective power)",
                "Pass the level-0 microns per pixel explicitly (e.g. --mpp 0.25 for a 40x scan).")


def open_slide(path: str | os.PathLike, target_mpp: float = DEFAULT_TARGET_MPP,
               mpp: float | None = None) -> SlideReader:
    """Open ``path`` for tiling at ``target_mpp`` µm/px; raises SlideError with what to do."""
    return SlideReader(path, target_mpp=target_mpp, mpp=mpp)
