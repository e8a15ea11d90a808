"""ONNX export (torch) and exported-model metadata (no torch)."""
