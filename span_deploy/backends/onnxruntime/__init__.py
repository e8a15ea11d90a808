"""ONNX Runtime backend: ``ort`` (SparseWindowAttention custom op) and ``ort-portable`` (standard ops).

loader: the session (options, execution providers, the custom-op library); runner: OrtBackend.
"""
from .loader import OrtModel, load_model_file
from .runner import OrtBackend

__all__ = ["OrtBackend", "OrtModel", "load_model_file"]
