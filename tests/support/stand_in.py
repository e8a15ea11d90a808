"""A stand-in SPAN backend for the slide-side tests only (the real backends live elsewhere).

Deterministic and checkable: the slide embedding is the mean feature, the patch score is the
feature sum, and it records the coords it received.
"""
from __future__ import annotations

import numpy as np

from span_deploy.backends.base import SpanResult
from span_deploy.config import SpanConfig


class StandInBackend:
    name = "stand-in"
    max_tokens = None

    def __init__(self, feat_dim: int):
        self.cfg = SpanConfig(task="classification", feat_dim=feat_dim, embed_dim=feat_dim, num_heads=1,
                              encoder_string="1", num_outputs=2)
        self.feat_dim = feat_dim
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def run(self, coords: np.ndarray, feats: np.ndarray) -> SpanResult:
        assert coords.dtype == np.int64 and coords.shape == (len(feats), 2)
        assert feats.dtype == np.float32 and feats.shape[1] == self.feat_dim
        self.calls.append((coords.copy(), feats.copy()))
        emb = feats.mean(0)
        return SpanResult(logits=np.array([emb.sum(), -emb.sum()], np.float32), slide_embedding=emb,
                          stage_globals=[], patch_features=feats, patch_scores=feats.sum(1),
                          stage_sizes=[len(feats)])


class MeanColourEncoder:
    """A numpy encoder: per-channel mean and std of the tile (feature_dim 6)."""
    name = "mean-colour"
    feature_dim = 6

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        t = tiles.astype(np.float64) / 255.0          # float64: exact means for the tests
        return np.concatenate([t.mean((1, 2)), t.std((1, 2))], axis=1).astype(np.float32)
