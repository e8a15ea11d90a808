"""Make the bundled demo model (UNTRAINED random weights, for trying the pipeline only).

  python -m span_export.demo_model [OUT_DIR] [--only classification|segmentation]   # default samples/demo

Writes, deterministically from seed 0: encoder.onnx (a small CNN patch encoder, uint8 NHWC
tiles -> 512-d), span.onnx (portable SPAN, the default config at 512-d CONCH-sized features),
config.yaml and checkpoint.pt (official layout, so `span-deploy export` can be tried on it); and
in OUT_DIR/segmentation a segmentation model (the official segmentation defaults at 512-d) for the
same encoder.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml
from torch import nn

from .encoders.export import export_module
from .model import load_model
from .onnx_export import export_onnx

REPO = Path(__file__).resolve().parents[2]

CONFIG = {
    "model": {"slide_configs": "111", "channel_factor": 1, "trans_type": "long", "econvs_type": "dwpatchconv",
              "enc_act": "ReLU", "embed_dim_div": 8,
              "input_projection": {"mlp_ratio": 0.5, "activation": None, "dropout": 0.05, "prenorm": False,
                                   "bias": False, "drop_first": False},
              "token_init_types": ["lrn1e-4"], "global_strategy": "identity", "ff_ratio": 2, "attn_drop": 0.05,
              "proj_drop": 0.0, "drop_path": 0.0, "window_size": 3, "share_qkv": False, "pos_emb": "rpb",
              "pos_std": 0.02, "kernel_size": 2, "stride": 2, "dilation": 1, "conv_bias": False,
              "edge_mode": "count", "edge_eps": 1e-6, "conv_norm_position": "pre"},
    "task": "classification", "dataset": "C16", "features_variant": "CONCH",
    "classification": {"aggr_method": "multi_addition", "cls_drop": 0.05, "head_act": "relu", "head_div": 4,
                       "head_norm": True},
}


class DemoCNN(nn.Module):
    """224x224 RGB -> 512-d; a stand-in for a real patch encoder (CONCH-sized output)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 7, stride=4, padding=3), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 512))

    def forward(self, x):
        return self.body(x)


# The official segmentation defaults (configs/segmentation.yaml over model/segmentation_span.yaml)
# at the demo encoder's 512-d features, D = 64, channel_factor 1 (a small file); threshold 0.5
# because an untrained model's probabilities sit near 0.5 (the official 0.2 marks everything).
SEG_CONFIG = {
    "model": {"slide_configs": "111-11", "channel_factor": 1, "trans_type": "long", "dtrans_type": "long",
              "econvs_type": "patchconv", "dconvs_type": "pixelshuffle", "enc_act": "ReLU", "embed_dim_div": 8,
              "skip_first": 1,
              "input_projection": {"mlp_ratio": 0.5, "activation": None, "dropout": 0.05, "prenorm": False,
                                   "bias": False, "drop_first": False},
              "token_init_types": ["max", "mean", "fix1e-4"], "global_strategy": "proj", "connection": "concat",
              "ff_ratio": 2.0, "attn_drop": 0.05, "proj_drop": 0.0, "drop_path": 0.0, "window_size": 3,
              "share_qkv": False, "pos_emb": "rpb", "pos_std": 0.02, "kernel_size": 2, "stride": 2, "dilation": 1,
              "conv_bias": False, "edge_mode": "none", "edge_eps": 1e-6, "conv_norm_position": "post"},
    "task": "segmentation", "dataset": "C16", "features_variant": "CONCH", "features_dim": 512,
    "segmentation": {"dice_weight": 0.75, "threshold": 0.5},
}


def make_segmentation(out: Path) -> None:
    """samples/demo/segmentation: config.yaml, checkpoint.pt (official layout), span.onnx (portable)."""
    from span_deploy.config import load_config

    from .model.span import SpanSegModel
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    (out / "config.yaml").write_text(yaml.safe_dump(SEG_CONFIG, sort_keys=False))
    model = SpanSegModel(load_config(out / "config.yaml"), 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "table_RPB" in name:
                p.normal_(0, 0.02)
        for name, b in model.named_buffers():
            if name.endswith("fixed_tokens"):
                b.normal_(0, 1e-4)
    torch.save(model.state_dict(), out / "checkpoint.pt")
    export_onnx(load_model(out / "checkpoint.pt", out / "config.yaml"), out / "span.onnx", attention="portable")
    print(f"demo segmentation model (untrained) in {out}")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    export_module(DemoCNN().eval(), out / "encoder.onnx", arch="demo-cnn-untrained")
    (out / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    # an official-layout checkpoint with random weights: build, randomise, save
    from span_deploy.config import load_config
    from .model.span import SpanModel
    cfg = load_config(out / "config.yaml")
    model = SpanModel(cfg, 2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "table_RPB" in name or "learnable_tokens" in name:
                p.normal_(0, 0.02)
    torch.save(model.state_dict(), out / "checkpoint.pt")
    export_onnx(load_model(out / "checkpoint.pt", out / "config.yaml"), out / "span.onnx", attention="portable")
    print(f"demo model (untrained) in {out}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", type=Path, default=REPO / "samples" / "demo")
    ap.add_argument("--only", choices=["classification", "segmentation"], default=None,
                    help="make one of the two demo models (default: both)")
    a = ap.parse_args()
    if a.only in (None, "classification"):
        main(a.out)
    if a.only in (None, "segmentation"):
        make_segmentation(a.out / "segmentation")
