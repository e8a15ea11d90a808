"""Features h5 readable by the official SPAN code and by TRIDENT / CLAM tooling.

Datasets (rows aligned):
* ``features`` (N, F) float32 and ``coords`` (N, 2) int64, level-0 px of each tile's top-left
  (TRIDENT / CLAM naming; column 0 = x, column 1 = y);
* ``feats``: an HDF5 hard link to ``features`` (official SPAN naming; no data copied);
* ``cords`` (N, 2) int64 = grid index * 224, so the official ``trunc(float32(c) / 224 - min)``
  gives the grid exactly even when the level-0 step is not 224 (e.g. 40x scans).
Attributes on ``coords`` (and the file root): patch_size 224, patch_size_level0 (= level-0
step), target_mpp, mpp (effective), level0_mpp, mpp_source, coords_order "xy", read_level and
read_size (the pyramid level read and the side read there), and ``patch_level`` only where CLAM's
reading of it is right (see ``clam_level_attrs``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import FeatureFileError
from .atomic import atomic_path


def clam_level_attrs(level: int, read_size: int, step0: int, downsample: float) -> dict[str, int]:
    """CLAM readers take a tile's level-0 footprint as ``patch_size * level_downsamples[patch_level]``
    and read ``patch_size`` px at ``patch_level``. That holds only where 224 px at the level read
    cover exactly the level-0 step; where tiles are resampled (an NDPI at 0.5 µm/px: 491 level-0 px
    read as 246 px at level 1) no (patch_level, 224) pair is right, so ``patch_level`` is left out --
    as TRIDENT, which never writes it, does -- and a CLAM reader fails on the missing key instead
    of silently reading 448 px. ``read_level`` / ``read_size`` always say what was read."""
    attrs = {"read_level": int(level), "read_size": int(read_size)}
    if read_size == 224 and int(round(224 * downsample)) == int(step0):
        attrs["patch_level"] = int(level)
    return attrs


def write_features_h5(path: str | os.PathLike, features: np.ndarray, coords: np.ndarray,
                      cords: np.ndarray, attrs: dict[str, Any] | None = None,
                      extra: dict[str, np.ndarray] | None = None) -> Path:
    """features/feats, coords, cords; ``extra``: more per-patch datasets (N, ...) in the same row
    order, e.g. a segmentation model's patch_probabilities."""
    features = np.asarray(features, np.float32)
    coords, cords = np.asarray(coords, np.int64), np.asarray(cords, np.int64)
    n = features.shape[0]
    if features.ndim != 2 or coords.shape != (n, 2) or cords.shape != (n, 2):
        raise ValueError(f"shape mismatch: features {features.shape}, coords {coords.shape}, "
                         f"cords {cords.shape}")
    attrs = {"patch_size": 224, "coords_order": "xy", **(attrs or {})}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=features)
            f["feats"] = f["features"]                  # hard link: same data, second name
            c = f.create_dataset("coords", data=coords)
            g = f.create_dataset("cords", data=cords)
            g.attrs["meaning"] = "grid index * 224 (x, y)"
            for name, arr in (extra or {}).items():
                arr = np.asarray(arr)
                if arr.shape[:1] != (n,):
                    raise ValueError(f"extra dataset {name} has shape {arr.shape}, not ({n}, ...)")
                f.create_dataset(name, data=arr)
            for k, v in attrs.items():
                if v is not None:
                    c.attrs[k] = v
                    f.attrs[k] = v
    return Path(path)


def read_features_h5(path: str | os.PathLike) -> dict[str, Any]:
    """features, coords, cords (np arrays) and attrs (dict); accepts either naming."""
    try:
        with h5py.File(path, "r") as f:
            feats = f["features"] if "features" in f else f["feats"]
            out = {"features": feats[()], "attrs": dict(f.attrs)}
            if "coords" in f:
                out["coords"] = f["coords"][()]
            if "cords" in f:
                out["cords"] = f["cords"][()]
            return out
    except (OSError, KeyError) as e:
        raise FeatureFileError(f"cannot read features from {path} ({e}). "
                               "Expected datasets features/coords or feats/cords.") from e
