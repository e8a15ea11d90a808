"""Feature files: official h5 (feats/cords, or x/pos) and TRIDENT/CLAM h5 (features/coords)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FeatureFileError

NAMINGS = (("feats", "cords"), ("x", "pos"), ("features", "coords"))


@dataclass(frozen=True)
class SlideFeatures:
    feats: np.ndarray    # (N, F) float32
    coords: np.ndarray   # (N, 2) raw pixel coordinates
    path: str


def read_features(path: str | Path, feat_dim: int | None = None) -> SlideFeatures:
    """Read and validate one slide's features; every problem is a FeatureFileError naming the file."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise FeatureFileError(f"feature file not found: {p}")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise FeatureFileError(f"{p}: not a readable HDF5 file ({e})") from None
    with f:
        for fk, ck in NAMINGS:
            if fk in f and ck in f:
                feats, coords = f[fk][()], f[ck][()]
                break
        else:
            raise FeatureFileError(
                f"{p}: no feature/coordinate datasets; expected feats+cords (official), x+pos, or "
                f"features+coords (TRIDENT/CLAM); found {sorted(f.keys())}")
    feats, coords = check_slide_arrays(feats, coords, p, feat_dim)
    return SlideFeatures(feats, coords, str(p))


def check_slide_arrays(feats, coords, where: object = "features", feat_dim: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """One slide's (N, F) features and (N, 2) coordinates, validated: float32 features, finite
    values, agreeing rows, the model's width. ``where`` names the source in messages (a file, or
    "predict() arguments" for in-memory arrays)."""
    feats = np.asarray(feats)
    coords = np.asarray(coords)
    if feats.ndim == 3 and feats.shape[0] == 1:  # CLAM/TRIDENT sometimes keep a batch axis
        feats = feats[0]
    if coords.ndim == 3 and coords.shape[0] == 1:
        coords = coords[0]
    if feats.ndim != 2:
        raise FeatureFileError(f"{where}: features must be 2-D (N, F), got shape {feats.shape}")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise FeatureFileError(f"{where}: coordinates must have shape (N, 2), got {coords.shape}")
    if feats.shape[0] != coords.shape[0]:
        raise FeatureFileError(f"{where}: {feats.shape[0]} feature rows but {coords.shape[0]} coordinates")
    if feats.shape[0] == 0:
        raise FeatureFileError(f"{where}: the slide is empty (0 patches); nothing to predict")
    if not np.issubdtype(feats.dtype, np.floating):
        raise FeatureFileError(f"{where}: features have dtype {feats.dtype}; expected floating point")
    if not np.issubdtype(coords.dtype, np.number):
        raise FeatureFileError(f"{where}: coordinates have dtype {coords.dtype}; expected numbers")
    feats = feats.astype(np.float32, copy=False)
    bad = ~np.isfinite(feats)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise FeatureFileError(f"{where}: {len(rows)} patch(es) have NaN/Inf features (first: row {int(rows[0])}); "
                               "re-extract or drop those patches")
    if not np.all(np.isfinite(coords)):
        raise FeatureFileError(f"{where}: coordinates contain NaN/Inf")
    if feat_dim is not None and feats.shape[1] != feat_dim:
        raise FeatureFileError(f"{where}: features are {feats.shape[1]}-d but the model expects {feat_dim}-d; "
                               "use features from the encoder the model was trained on (check features_variant)")
    return feats, coords
