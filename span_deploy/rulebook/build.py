"""Assemble the per-slide rulebook and its engine inputs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..config import SpanConfig
from ..errors import RulebookError
from .conv import downsample, merge2x2
from .coords import Padding, check_unique, normalise, pad, sort_order
from .io import engine_inputs
from .upsample import pixelshuffle_tables, transpose_gather
from .windows import StageWindows, stage_windows

RULEBOOK_VERSION = 1


@dataclass(frozen=True)
class StageRulebook:
    coords: np.ndarray            # (N_s, 2) int64, array order
    grid: tuple[int, int]         # the conv grid entering the next downsampling
    gather: np.ndarray | None     # (N_s, taps) int32 rows of stage s-1, -1 = empty (s >= 1)
    windows: StageWindows

    @property
    def size(self) -> int:
        return int(self.coords.shape[0])


@dataclass(frozen=True)
class DecoderRulebook:
    """Segmentation decoder block i: from stage ``target + 1``'s rows onto stage ``target``'s."""
    target: int                     # the encoder stage whose coordinates (and rows) it restores
    parent: np.ndarray | None       # pixelshuffle: (N_t,) int32 coarse row of each fine row
    slot: np.ndarray | None         # pixelshuffle: (N_t,) int32 child slot (a % s) * s + b % s
    gather: np.ndarray | None       # patchinvs: (N_t, k*k) int32 coarse row per tap, -1 = none


@dataclass(frozen=True)
class Rulebook:
    version: int
    sort_index: np.ndarray        # (N,) input row of each sorted patch
    norm_coords: np.ndarray       # (N, 2) int32 normalised, sorted cells
    padding: Padding
    stages: list[StageRulebook]
    decoder: tuple[DecoderRulebook, ...] = ()

    @property
    def num_patches(self) -> int:
        return int(self.sort_index.shape[0])

    @property
    def stage_sizes(self) -> list[int]:
        return [s.size for s in self.stages]

    @property
    def patch_rows(self) -> np.ndarray:
        """Stage-0 row of each input patch (input order)."""
        rows = np.empty(self.num_patches, np.int64)
        rows[self.sort_index] = np.arange(self.num_patches) + int(self.padding.lead)
        return rows

    def empty_stage0_rows(self, width: int, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """(N0, width) stage-0 rows with the pad rows zeroed and the patch rows left to fill."""
        lead, n = int(self.padding.lead), self.num_patches
        out = np.empty((lead + n + int(self.padding.trail), width), dtype)
        out[:lead] = 0
        out[lead + n:] = 0
        return out

    def pad_features(self, feats: np.ndarray) -> np.ndarray:
        """(N, F) input-order features -> (N0, F) stage-0 rows: sorted, zero pad rows added."""
        feats = np.asarray(feats)
        lead, n = int(self.padding.lead), self.num_patches
        out = self.empty_stage0_rows(feats.shape[1], feats.dtype)
        # gathered straight into place: one (N, F) copy, not a sorted copy and then a padded one
        np.take(feats, self.sort_index, axis=0, out=out[lead:lead + n])
        return out

    def engine_inputs(self, cfg: SpanConfig, feats: "np.ndarray | SortedFeatures | None" = None
                      ) -> dict[str, np.ndarray]:
        """The named engine inputs of the tensor contract (io.engine_inputs), feats included when
        given (in input order, or already in this rulebook's order as SortedFeatures)."""
        out: dict[str, np.ndarray] = {}
        for spec in engine_inputs(cfg):
            if spec.kind == "feats":
                if isinstance(feats, SortedFeatures):
                    if feats.rulebook is not self:
                        raise RulebookError("the sorted features were made for another rulebook")
                    out[spec.name] = feats.rows
                elif feats is not None:
                    out[spec.name] = self.pad_features(np.asarray(feats, np.float32))
                continue
            st = self.stages[spec.stage]
            if spec.kind in ("win_u", "win_s", "pos_u", "pos_s"):
                w = st.windows.unshifted if spec.kind.endswith("_u") else st.windows.shifted
                out[spec.name] = w.win if spec.kind.startswith("win") else w.pos
            elif spec.kind == "gather":
                out[spec.name] = st.gather
            elif spec.kind == "coords":
                out[spec.name] = st.coords.astype(np.float32)
            elif spec.kind in ("up_parent", "up_slot", "up_gather"):
                d = self.decoder[spec.block]
                out[spec.name] = {"up_parent": d.parent, "up_slot": d.slot, "up_gather": d.gather}[spec.kind]
            else:  # pragma: no cover - io.py and this function change together
                raise RulebookError(f"no rulebook table for engine input {spec.name} ({spec.kind})")
        return out


# Rows per call when a row-wise function maps in-memory sorted rows (SortedFeatures.map_rows).
MAP_CHUNK_ROWS = 8192

# reader(fn, width, dtype) -> (N0, width) rows in the rulebook's order, each chunk of features
# passed through fn (None: as they are), pad rows fn(zero row)
RowReader = Callable[[Optional[Callable[[np.ndarray], np.ndarray]], int, np.dtype], np.ndarray]


class SortedFeatures:
    """A slide's features in a rulebook's stage-0 row order (sorted, zero pad rows added): a
    backend's ``run(coords, feats)`` takes these as well as input-order (N, F) features, and then
    makes no second (N, F) copy.

    Either held (``rows``), or still in their file (``features.FeatureFile.sorted_reader``):
    then ``rows`` reads them on first use, and ``map_rows`` streams them, chunk by chunk, through
    a row-wise function (the graph's stem) so that only its output is ever whole in memory.
    """

    def __init__(self, rulebook: Rulebook, rows: np.ndarray | None = None, reader: RowReader | None = None,
                 feat_dim: int | None = None):
        if (rows is None) == (reader is None):
            raise ValueError("SortedFeatures takes rows or a reader")
        self.rulebook, self._rows, self._reader = rulebook, rows, reader
        self.feat_dim = int(rows.shape[1]) if rows is not None else int(feat_dim)

    @property
    def rows(self) -> np.ndarray:
        """(N0, F) float32."""
        if self._rows is None:
            self._rows = self._reader(None, self.feat_dim, np.dtype(np.float32))
        return self._rows

    def map_rows(self, fn: Callable[[np.ndarray], np.ndarray], width: int, dtype: np.dtype | type) -> np.ndarray:
        """(N0, width): ``fn`` applied to every stage-0 row (pads included), chunk by chunk."""
        if self._rows is None:
            return self._reader(fn, width, np.dtype(dtype))
        out = np.empty((self._rows.shape[0], width), dtype)
        for a in range(0, self._rows.shape[0], MAP_CHUNK_ROWS):
            out[a:a + MAP_CHUNK_ROWS] = fn(self._rows[a:a + MAP_CHUNK_ROWS])
        return out


def rulebook_for(coords: np.ndarray, feats: "np.ndarray | SortedFeatures", cfg: SpanConfig) -> Rulebook:
    """The rulebook a backend's run uses: the one the sorted features came with, else built."""
    if isinstance(feats, SortedFeatures):
        return feats.rulebook
    return build_rulebook(coords, cfg)


def build_rulebook(raw_coords: np.ndarray, cfg: SpanConfig) -> Rulebook:
    """Normalise, sort, pad, then per stage: downsampling tables and window tables."""
    raw = np.asarray(raw_coords)
    norm = normalise(raw)
    order = sort_order(norm)
    norm_sorted = norm[order]
    check_unique(norm_sorted, raw[order])
    coords0, padding = pad(norm_sorted, cfg.kernel_size, cfg.stride, cfg.dilation, cfg.pad_layers)
    coords = coords0.astype(np.int64)
    grid = (int(coords[:, 0].max()) + 1, int(coords[:, 1].max()) + 1)
    stages = [StageRulebook(coords, grid, None, stage_windows(coords, cfg.window_size))]
    for s in range(1, cfg.num_stages):
        if cfg.conv_type == "patchmerge":
            coords, gather, grid = merge2x2(coords, grid)
        else:
            coords, gather, grid = downsample(coords, grid, cfg.kernel_size, cfg.stride, cfg.dilation)
        if len(coords) == 0:
            raise RulebookError(f"stage {s} has no output sites (grid {grid}); the kernel/stride/"
                                "dilation do not fit the padded grid")
        stages.append(StageRulebook(coords, grid, gather, stage_windows(coords, cfg.window_size)))
    return Rulebook(RULEBOOK_VERSION, order, norm_sorted, padding, stages, decoder_tables(stages, cfg))


def decoder_tables(stages: list[StageRulebook], cfg: SpanConfig) -> tuple[DecoderRulebook, ...]:
    """Per decoder block, the upsampling table from stage t + 1 onto stage t (t = E - 2 - i)."""
    out = []
    for i in range(cfg.num_decoder_stages):
        t = cfg.decoder_target_stage(i)
        fine, coarse = stages[t].coords, stages[t + 1].coords
        if cfg.dconv_type == "pixelshuffle":
            parent, slot = pixelshuffle_tables(fine, coarse, cfg.stride)
            out.append(DecoderRulebook(t, parent, slot, None))
        else:
            out.append(DecoderRulebook(t, None, None,
                                       transpose_gather(fine, coarse, cfg.kernel_size, cfg.stride, cfg.dilation)))
    return tuple(out)
