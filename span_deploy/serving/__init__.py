"""Serving SPAN behind an inference server (``triton/``: a Triton Inference Server model repository)."""
