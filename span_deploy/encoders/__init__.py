"""Patch encoders: torch definitions + ONNX export (export side), ONNX Runtime runner (runtime).

Importing this package does not import torch; ``resnet50_trunc`` and ``vit`` do.
"""
