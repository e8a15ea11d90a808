"""Patch encoders on the runtime side: the ONNX Runtime runner of an exported encoder.

Encoder definitions and their export (torch) live in the export package: span_export.encoders.
"""
