"""Slide fixtures (a pytest plugin, see tests/conftest.py): the shared real WSIs and generated
pyramidal TIFFs."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.cases import SHARED

WSI = SHARED / "testdata" / "wsi"
SVS = WSI / "CMU-1-Small-Region.svs"
NDPI = WSI / "test3-DAPI-2-(387).ndpi"


def _need(p: Path) -> Path:
    if not p.is_file():
        pytest.skip(f"shared test slide missing: {p} (shared/ must sit beside the clone)")
    return p


@pytest.fixture
def svs() -> Path:
    return _need(SVS)


@pytest.fixture
def ndpi() -> Path:
    return _need(NDPI)


@pytest.fixture
def make_slide(tmp_path):
    """make_slide(name, cols, rows, tissue_cells=(i0, j0, i1, j1) | None, mpp=0.5, cell=224)."""
    from tests.support.tiff_slides import write_synthetic_slide

    def make(name: str, cols: int, rows: int, tissue_cells=None, mpp: float | None = 0.5,
             cell: int = 224, downsamples=(1, 4, 16)) -> Path:
        rect = None if tissue_cells is None else tuple(v * cell for v in tissue_cells)
        return write_synthetic_slide(tmp_path / name, cols * cell, rows * cell, rect, mpp, downsamples)
    return make
