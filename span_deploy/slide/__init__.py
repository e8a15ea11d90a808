"""Slide side: open (OpenSlide), find tissue, tile on the global 224-px grid, prefetch tiles."""
from .prefetch import prefetch_batches
from .reader import DEFAULT_TARGET_MPP, TILE, SlideReader, open_slide
from .tiling import DEFAULT_TISSUE_THRESHOLD, TileGrid, tile_slide

__all__ = ["DEFAULT_TARGET_MPP", "DEFAULT_TISSUE_THRESHOLD", "TILE", "SlideReader", "TileGrid",
           "open_slide", "prefetch_batches", "tile_slide"]
