"""OrtBackend: coordinates + features in, SpanResult out (rulebook on the host). No torch."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...rulebook import SortedFeatures, rulebook_for
from ..base import SpanResult
from ..result import named_outputs, to_result
from .loader import backend_name, load_model_file


class OrtBackend:
    max_tokens = None          # ONNX Runtime takes any slide size
    # Hand the CPU arena's free chunks back to the OS at the end of each run. Off by default: a
    # session that runs many slides keeps them for the next one (no new page faults); a one-slide
    # command (predict) turns it on, so the result's copies reuse that memory instead of adding
    # to the peak (20k-patch slide: peak RSS 513 -> 456 MB).
    release_arena_after_run = False

    def __init__(self, model: str | Path, device: str = "cpu", threads: int | None = None,
                 expect_attention: str | None = None):
        m = load_model_file(model, device, threads, expect_attention)
        self.path, self.session, self.cfg = m.path, m.session, m.cfg
        self.attention = m.attention
        self.name = backend_name(self.attention)
        self.fp16 = m.precision == "fp16"
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run_options(self):
        if not self.release_arena_after_run:
            return None
        from .loader import import_onnxruntime
        ro = import_onnxruntime().RunOptions()
        ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return ro

    @property
    def feat_dim(self) -> int:
        return self.cfg.feat_dim

    def run(self, coords: np.ndarray, feats: np.ndarray | SortedFeatures) -> SpanResult:
        t0 = time.perf_counter()
        rb = rulebook_for(coords, feats, self.cfg)
        inputs = rb.engine_inputs(self.cfg, feats)
        if self.fp16:
            inputs["feats"] = inputs["feats"].astype(np.float16)
        t1 = time.perf_counter()
        outs = self.session.run(self.output_names, {n: inputs[n] for n in self.input_names}, self._run_options())
        t2 = time.perf_counter()
        return to_result(named_outputs(outs, self.output_names), rb, self.cfg,
                         {"rulebook": t1 - t0, "compute": t2 - t1, "total": t2 - t0})
