"""The PyTorch reference backend (eager, memory-light window attention)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from span_deploy.backends.base import SpanResult
from span_deploy.backends.result import named_outputs, to_result
from span_deploy.rulebook import SortedFeatures, rulebook_for


class TorchBackend:
    """Follows span_deploy.backends.Backend; opened through span_deploy.backends.torch."""

    name = "torch"
    max_tokens = None

    def __init__(self, checkpoint: str | Path, config: str | Path, device: str = "cpu", threads: int | None = None):
        import torch

        from .model import load_model

        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device("cuda" if device == "cuda" else "cpu")
        self.model = load_model(checkpoint, config).to(self.device)
        self.cfg = self.model.cfg

    @property
    def feat_dim(self) -> int:
        return self.cfg.feat_dim

    def run_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs by name for a feed of engine inputs (what the ONNX graphs take), so
        a comparison tool (validate's polygraphy runner) feeds torch exactly what it feeds them."""
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self.device) for n in self.model.input_names]
        with torch.inference_mode():
            outs = self.model(*args)
        return dict(zip(self.model.output_names, (o.float().cpu().numpy() for o in outs)))

    def run(self, coords: np.ndarray, feats: np.ndarray | SortedFeatures) -> SpanResult:
        import torch

        t0 = time.perf_counter()
        rb = rulebook_for(coords, feats, self.cfg)
        inputs = rb.engine_inputs(self.cfg, feats)
        t1 = time.perf_counter()
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self.device) for n in self.model.input_names]
        t2 = time.perf_counter()
        with torch.inference_mode():
            outs = self.model(*args)
        outs = [o.float().cpu().numpy() for o in outs]
        t3 = time.perf_counter()
        return to_result(named_outputs(outs, self.model.output_names), rb, self.cfg, {"rulebook": t1 - t0, "h2d": t2 - t1, "compute": t3 - t2, "total": t3 - t0})
