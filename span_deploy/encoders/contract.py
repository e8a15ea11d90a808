"""The patch-encoder contract shared by the exporter (span_export.encoders) and the runner.

Input ``tiles``: uint8 NHWC (B, 224, 224, 3) RGB, batch dynamic -- exactly what the slide reader
produces; the graph itself scales to [0, 1] and applies the ImageNet mean/std, so normalisation
cannot be forgotten or done twice. Output ``features``: float32 (B, F). The ONNX metadata_props
carry METADATA_ARCH (the architecture), feature_dim, input_format, mean, std, weights_sha256.
"""
from __future__ import annotations

INPUT_NAME = "tiles"
OUTPUT_NAME = "features"
INPUT_FORMAT = "uint8_nhwc_rgb_224"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
METADATA_ARCH = "span_deploy.encoder"
