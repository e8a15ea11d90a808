"""Tile polygons as a QuPath-openable GeoJSON FeatureCollection (level-0 px).

QuPath (0.3+) reads ``properties.objectType`` ("detection": light, colourable by measurement)
and ``properties.measurements`` ({name: value});
File > Import objects, or drag the file onto the open slide.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text


def tiles_feature_collection(coords: np.ndarray, step0: int, scores: np.ndarray,
                             measurement: str = "span_score") -> dict:
    coords = np.asarray(coords, np.int64)
    scores = np.asarray(scores, np.float64)
    feats = []
    for (x, y), s in zip(coords.tolist(), scores.tolist()):
        ring = [[x, y], [x + step0, y], [x + step0, y + step0], [x, y + step0], [x, y]]
        feats.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"objectType": "detection", "name": "tile",
                           "measurements": {measurement: s if np.isfinite(s) else None}},
        })
    return {"type": "FeatureCollection", "features": feats}


def write_tiles_geojson(path: str | os.PathLike, coords: np.ndarray, step0: int,
                        scores: np.ndarray, measurement: str = "span_score") -> Path:
    fc = tiles_feature_collection(coords, step0, scores, measurement)
    return atomic_write_text(path, json.dumps(fc, separators=(",", ":")))
