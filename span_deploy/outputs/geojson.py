"""Tiles and regions as QuPath-openable GeoJSON FeatureCollections (level-0 px).

QuPath (0.3+) reads ``properties.objectType`` ("detection": light, colourable by measurement;
"annotation": editable regions), ``properties.classification`` ({"name", "color": [r, g, b]})
and ``properties.measurements`` ({name: value}); File > Import objects, or drag the file onto
the open slide.

Regions (segmentation): the positive tiles' squares merged per 4-connected component (tiles that
only touch at a corner are separate regions) with shapely, holes kept, one annotation each.
"""
from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text

# QuPath's built-in classes and their default colours
POSITIVE_CLASS = {"name": "Tumor", "color": [200, 0, 0]}
NEGATIVE_CLASS = {"name": "Other", "color": [255, 200, 0]}


def _square(x: int, y: int, step0: int) -> list[list[int]]:
    return [[x, y], [x + step0, y], [x + step0, y + step0], [x, y + step0], [x, y]]


def tiles_feature_collection(coords: np.ndarray, step0: int, scores: np.ndarray,
                             measurement: str = "span_score", threshold: float | None = None) -> dict:
    """One detection per tile with its score; with ``threshold``, also a class (positive at
    score >= threshold)."""
    coords = np.asarray(coords, np.int64)
    scores = np.asarray(scores, np.float64)
    feats = []
    for (x, y), s in zip(coords.tolist(), scores.tolist()):
        props: dict = {"objectType": "detection", "name": "tile",
                       "measurements": {measurement: s if np.isfinite(s) else None}}
        if threshold is not None:
            props["classification"] = dict(POSITIVE_CLASS if s >= threshold else NEGATIVE_CLASS)
        feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(x, y, step0)]},
                      "properties": props})
    return {"type": "FeatureCollection", "features": feats}


def write_tiles_geojson(path: str | os.PathLike, coords: np.ndarray, step0: int, scores: np.ndarray,
                        measurement: str = "span_score", threshold: float | None = None) -> Path:
    fc = tiles_feature_collection(coords, step0, scores, measurement, threshold)
    return atomic_write_text(path, json.dumps(fc, separators=(",", ":")))


def components(cells: np.ndarray) -> list[np.ndarray]:
    """4-connected components of grid cells (N, 2): lists of row indices, largest first."""
    where = {(int(a), int(b)): i for i, (a, b) in enumerate(np.asarray(cells, np.int64).tolist())}
    seen = np.zeros(len(where), bool)
    out = []
    for start in range(len(where)):
        if seen[start]:
            continue
        seen[start] = True
        queue, members = deque([start]), []
        while queue:
            i = queue.popleft()
            members.append(i)
            a, b = cells[i]
            for nb in ((a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)):
                j = where.get((int(nb[0]), int(nb[1])))
                if j is not None and not seen[j]:
                    seen[j] = True
                    queue.append(j)
        out.append(np.array(sorted(members), np.int64))
    return sorted(out, key=len, reverse=True)


def region_polygons(cells: np.ndarray, step0: int, origin: tuple[int, int] = (0, 0)):
    """(shapely Polygon, member rows) per 4-connected component of ``cells`` (grid indices);
    level-0 px = origin + cell * step0."""
    from shapely import box, unary_union

    cells = np.asarray(cells, np.int64)
    out = []
    for rows in components(cells):
        c = cells[rows]
        x = origin[0] + c[:, 0] * step0
        y = origin[1] + c[:, 1] * step0
        geom = unary_union(box(x, y, x + step0, y + step0))
        out.append((geom, rows))
    return out


def regions_feature_collection(grid: np.ndarray, coords: np.ndarray, step0: int, probs: np.ndarray,
                               threshold: float, mpp: float | None = None) -> dict:
    """One annotation per connected region of tiles with probability >= threshold."""
    from shapely.geometry import mapping

    grid = np.asarray(grid, np.int64)
    coords = np.asarray(coords, np.int64)
    probs = np.asarray(probs, np.float64)
    pos = np.flatnonzero(probs >= threshold)
    feats = []
    if len(pos):
        origin = tuple(int(v) for v in (coords[pos[0]] - grid[pos[0]] * step0))
        for k, (geom, rows) in enumerate(region_polygons(grid[pos], step0, origin)):
            p = probs[pos[rows]]
            m = {"num_tiles": int(len(rows)), "mean_probability": float(p.mean()),
                 "max_probability": float(p.max())}
            if mpp:
                m["area_mm2"] = float(geom.area * (mpp / 1000.0) ** 2)
            feats.append({"type": "Feature", "geometry": mapping(geom),
                          "properties": {"objectType": "annotation", "name": f"region {k + 1}",
                                         "classification": dict(POSITIVE_CLASS), "measurements": m}})
    return {"type": "FeatureCollection", "features": feats}


def write_regions_geojson(path: str | os.PathLike, grid: np.ndarray, coords: np.ndarray, step0: int,
                          probs: np.ndarray, threshold: float, mpp: float | None = None) -> Path:
    fc = regions_feature_collection(grid, coords, step0, probs, threshold, mpp)
    return atomic_write_text(path, json.dumps(fc, separators=(",", ":")))
