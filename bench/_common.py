"""Shared helpers for the slide benches (not tests): synthetic slides, small encoders, stand-in SPAN."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from span_deploy.backends.base import SpanResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the generated-TIFF writer of the tests
from tests.support.tiff_slides import write_synthetic_slide  # noqa: E402


def square_slide(path: Path, n_tiles: int, margin: int = 2) -> tuple[Path, int]:
    """A 0.5 µm/px slide whose tissue is a k x k block of grid cells (k*k ~ n_tiles)."""
    k = int(round(n_tiles ** 0.5))
    side = (k + 2 * margin) * 224
    if not path.exists():
        write_synthetic_slide(path, side, side, (margin * 224, margin * 224, (margin + k) * 224,
                                                 (margin + k) * 224), 0.5, (1, 4, 16, 64))
    return path, k * k


def export_small_cnn(out: Path) -> Path:
    """A small conv encoder (64-d) behind the standard uint8 NHWC ONNX contract."""
    import torch
    from torch import nn

    from span_export.encoders.export import export_module
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 7, stride=4, padding=3), nn.ReLU(),
                      nn.Conv2d(16, 64, 3, stride=2, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    return export_module(m, out, "small_cnn")


def export_r50(out: Path) -> Path:
    import torch

    from span_export.encoders.export import export_module
    from span_export.encoders.resnet50_trunc import ResNet50Trunc
    torch.manual_seed(0)
    return export_module(ResNet50Trunc().eval(), out, "resnet50_trunc")


class MeanBackend:
    """Stand-in SPAN step (the real backends are wired in elsewhere): mean pooling."""
    name = "mean-stand-in"

    def __init__(self, feat_dim: int):
        self.feat_dim = feat_dim

    def run(self, coords: np.ndarray, feats: np.ndarray) -> SpanResult:
        emb = feats.mean(0)
        return SpanResult(logits=emb[:2].copy(), slide_embedding=emb, stage_globals=[],
                          patch_features=feats, patch_scores=feats.mean(1), stage_sizes=[len(feats)])
