"""Feature files: official h5 (feats/cords, or x/pos) and TRIDENT/CLAM h5 (features/coords)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import FeatureFileError

if TYPE_CHECKING:
    from .rulebook import Rulebook, SortedFeatures

NAMINGS = (("feats", "cords"), ("x", "pos"), ("features", "coords"))


@dataclass(frozen=True)
class SlideFeatures:
    feats: np.ndarray    # (N, F) float32
    coords: np.ndarray   # (N, 2) raw pixel coordinates
    path: str


# Rows per read when features go straight into a rulebook's order: bounds the transient copy
# (8192 x 1024 float32 = 32 MiB) while h5py's per-call overhead stays negligible.
READ_CHUNK_ROWS = 8192


class FeatureFile:
    """One slide's feature file, open: coordinates read and validated, features not yet read.

    ``read()`` gives the (N, F) features in file order; ``read_sorted(rulebook)`` reads them in
    chunks straight into the rulebook's stage-0 row order (sorted, zero pads added), so a
    slide's features exist once in memory instead of twice. Use as a context manager.
    """

    def __init__(self, path: str | Path, feat_dim: int | None = None):
        import h5py

        self.path = p = Path(path)
        if not p.is_file():
            raise FeatureFileError(f"feature file not found: {p}")
        try:
            self._file = h5py.File(p, "r")
        except OSError as e:
            raise FeatureFileError(f"{p}: not a readable HDF5 file ({e})") from None
        try:
            for fk, ck in NAMINGS:
                if fk in self._file and ck in self._file:
                    self._ds, coords = self._file[fk], self._file[ck][()]
                    break
            else:
                raise FeatureFileError(
                    f"{p}: no feature/coordinate datasets; expected feats+cords (official), x+pos, or "
                    f"features+coords (TRIDENT/CLAM); found {sorted(self._file.keys())}")
            # CLAM/TRIDENT sometimes keep a batch axis of 1
            self._batch_axis = self._ds.ndim == 3 and self._ds.shape[0] == 1
            shape = self._ds.shape[1:] if self._batch_axis else self._ds.shape
            self.coords = check_slide_shapes(shape, self._ds.dtype, coords, p, feat_dim)
        except BaseException:
            self._file.close()
            raise
        self.num_patches, self.feat_dim = int(shape[0]), int(shape[1])

    def __enter__(self) -> "FeatureFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _rows(self, a: int, b: int) -> np.ndarray:
        block = self._ds[0, a:b] if self._batch_axis else self._ds[a:b]
        block = block.astype(np.float32, copy=False)
        check_finite_rows(block, self.path, a)
        return block

    def read(self) -> np.ndarray:
        """(N, F) float32 features in file order, validated."""
        feats = (self._ds[0] if self._batch_axis else self._ds[()]).astype(np.float32, copy=False)
        check_finite_rows(feats, self.path)
        return feats

    def read_sorted(self, rulebook: "Rulebook") -> "SortedFeatures":
        """The features in ``rulebook``'s stage-0 order (built from this file's coordinates)."""
        from .rulebook import SortedFeatures

        self._check_rulebook(rulebook)
        return SortedFeatures(rulebook, self._read_into(rulebook, None, self.feat_dim, np.dtype(np.float32)))

    def sorted_reader(self, rulebook: "Rulebook") -> "SortedFeatures":
        """The same, not read yet: read (or streamed through the graph's stem) when a backend
        runs, while this file is open."""
        from .rulebook import SortedFeatures

        self._check_rulebook(rulebook)
        return SortedFeatures(rulebook, reader=lambda fn, width, dtype: self._read_into(rulebook, fn, width, dtype),
                              feat_dim=self.feat_dim)

    def _check_rulebook(self, rulebook: "Rulebook") -> None:
        if rulebook.num_patches != self.num_patches:
            raise FeatureFileError(f"{self.path}: the rulebook is for {rulebook.num_patches} patches, "
                                   f"the file has {self.num_patches}")

    def _read_into(self, rulebook: "Rulebook", fn, width: int, dtype: np.dtype) -> np.ndarray:
        """(N0, width) rows in the rulebook's order: each chunk of file rows, through ``fn`` when
        given, goes straight to its sorted place; pad rows are zeros (fn of a zero row)."""
        rows = rulebook.empty_stage0_rows(width, dtype)
        if fn is not None:
            pad = fn(np.zeros((1, self.feat_dim), np.float32))
            lead, n = int(rulebook.padding.lead), self.num_patches
            rows[:lead] = pad
            rows[lead + n:] = pad
        dest = rulebook.patch_rows
        bad = 0
        first_bad = -1
        for a in range(0, self.num_patches, READ_CHUNK_ROWS):
            b = min(a + READ_CHUNK_ROWS, self.num_patches)
            try:
                block = self._rows(a, b)
            except NonFiniteRows as e:   # count over the whole file before saying so
                bad += e.count
                first_bad = e.first if first_bad < 0 else first_bad
                continue
            if not bad:
                rows[dest[a:b]] = block if fn is None else fn(block)
        if bad:
            raise FeatureFileError(non_finite_message(self.path, bad, first_bad))
        return rows


def read_features(path: str | Path, feat_dim: int | None = None) -> SlideFeatures:
    """Read and validate one slide's features; every problem is a FeatureFileError naming the file."""
    with FeatureFile(path, feat_dim) as f:
        try:
            feats = f.read()
        except NonFiniteRows as e:
            raise FeatureFileError(non_finite_message(f.path, e.count, e.first)) from None
        return SlideFeatures(feats, f.coords, str(f.path))


class NonFiniteRows(FeatureFileError):
    """Rows with NaN/Inf features (``count`` of them, the first at file row ``first``)."""

    def __init__(self, where: object, count: int, first: int):
        super().__init__(non_finite_message(where, count, first))
        self.count, self.first = count, first


def non_finite_message(where: object, count: int, first: int) -> str:
    return (f"{where}: {count} patch(es) have NaN/Inf features (first: row {first}); "
            "re-extract or drop those patches")


def check_finite_rows(feats: np.ndarray, where: object, row_offset: int = 0) -> None:
    """NonFiniteRows when a row of ``feats`` (file rows ``row_offset``...) holds NaN/Inf. Chunked,
    so the check's boolean temporaries stay small beside a large slide."""
    count, first = 0, -1
    for a in range(0, feats.shape[0], READ_CHUNK_ROWS):
        bad = ~np.isfinite(feats[a:a + READ_CHUNK_ROWS]).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            count += len(rows)
            first = row_offset + a + int(rows[0]) if first < 0 else first
    if count:
        raise NonFiniteRows(where, count, first)


def check_slide_shapes(feat_shape: tuple[int, ...], feat_dtype: np.dtype, coords: np.ndarray,
                       where: object, feat_dim: int | None = None) -> np.ndarray:
    """Validate the features' shape and dtype (without their values) and the coordinates;
    returns the (N, 2) coordinates."""
    coords = np.asarray(coords)
    if coords.ndim == 3 and coords.shape[0] == 1:
        coords = coords[0]
    if len(feat_shape) != 2:
        raise FeatureFileError(f"{where}: features must be 2-D (N, F), got shape {tuple(feat_shape)}")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise FeatureFileError(f"{where}: coordinates must have shape (N, 2), got {coords.shape}")
    if feat_shape[0] != coords.shape[0]:
        raise FeatureFileError(f"{where}: {feat_shape[0]} feature rows but {coords.shape[0]} coordinates")
    if feat_shape[0] == 0:
        raise FeatureFileError(f"{where}: the slide is empty (0 patches); nothing to predict")
    if not np.issubdtype(feat_dtype, np.floating):
        raise FeatureFileError(f"{where}: features have dtype {feat_dtype}; expected floating point")
    if not np.issubdtype(coords.dtype, np.number):
        raise FeatureFileError(f"{where}: coordinates have dtype {coords.dtype}; expected numbers")
    if not np.all(np.isfinite(coords)):
        raise FeatureFileError(f"{where}: coordinates contain NaN/Inf")
    if feat_dim is not None and feat_shape[1] != feat_dim:
        raise FeatureFileError(f"{where}: features are {feat_shape[1]}-d but the model expects {feat_dim}-d; "
                               "use features from the encoder the model was trained on (check features_variant)")
    return coords


def check_slide_arrays(feats, coords, where: object = "features", feat_dim: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """One slide's (N, F) features and (N, 2) coordinates, validated: float32 features, finite
    values, agreeing rows, the model's width. ``where`` names the source in messages (a file, or
    "predict() arguments" for in-memory arrays)."""
    feats = np.asarray(feats)
    if feats.ndim == 3 and feats.shape[0] == 1:  # CLAM/TRIDENT sometimes keep a batch axis
        feats = feats[0]
    coords = check_slide_shapes(feats.shape, feats.dtype, coords, where, feat_dim)
    feats = feats.astype(np.float32, copy=False)
    try:
        check_finite_rows(feats, where)
    except NonFiniteRows as e:   # a plain FeatureFileError to callers
        raise FeatureFileError(str(e)) from None
    return feats, coords
