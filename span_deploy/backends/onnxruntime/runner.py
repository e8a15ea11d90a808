"""OrtBackend: coordinates + features in, SpanResult out (rulebook on the host). No torch."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...rulebook import SortedFeatures, rulebook_for
from ..base import SpanResult
from ..result import named_outputs, to_result
from .heap import return_freed_heap
from .loader import backend_name, load_model_file
from .stem import StemRunner


class OrtBackend:
    max_tokens = None          # ONNX Runtime takes any slide size

    def __init__(self, model: str | Path, device: str = "cpu", threads: int | None = None,
                 expect_attention: str | None = None, single_slide: bool = False):
        m = load_model_file(model, device, threads, expect_attention, single_slide)
        self.path, self.session, self.cfg = m.path, m.session, m.cfg
        self.attention = m.attention
        self.name = backend_name(self.attention)
        self.fp16 = m.precision == "fp16"
        # a one-slide CPU session runs the graph's row-wise stem apart (stem.py): the features
        # stream through it, and the session below is fed the stem's output
        self.stem = None if m.stem is None else StemRunner(m.stem, np.float16 if self.fp16 else np.float32)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def feat_dim(self) -> int:
        return self.cfg.feat_dim

    def run(self, coords: np.ndarray, feats: np.ndarray | SortedFeatures) -> SpanResult:
        t0 = time.perf_counter()
        rb = rulebook_for(coords, feats, self.cfg)
        if self.stem is None:
            inputs = rb.engine_inputs(self.cfg, feats)
            if self.fp16:
                inputs["feats"] = inputs["feats"].astype(np.float16)
            timings = {}
        else:
            # the body's sessions for this slide's size first (body.py): loading, not compute
            self.session.prepare(rb.stage_sizes[0], self.stem.dtype)
            setup = self.session.setup_seconds
            inputs, timings = self._stem_inputs(rb, feats)
            timings["body_setup"] = setup
        t1 = time.perf_counter()
        # the feed holds the only references: a split body drops each input once nothing reads it
        feed = {n: inputs.pop(n) for n in self.input_names}
        del inputs
        outs = self.session.run(self.output_names, feed)
        del feed
        t2 = time.perf_counter()
        read, setup = timings.get("read_features", 0.0), timings.get("body_setup", 0.0)
        timings.update({"rulebook": t1 - t0 - timings.get("stem", 0.0) - read - setup,
                        "compute": t2 - t1 + timings.pop("stem", 0.0), "total": t2 - t0})
        return to_result(named_outputs(outs, self.output_names), rb, self.cfg, timings)

    def _stem_inputs(self, rb, feats: np.ndarray | SortedFeatures) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The tables and the stem's output, the features streamed through the stem (read from
        their file chunk by chunk when they are still there)."""
        if not isinstance(feats, SortedFeatures):
            feats = SortedFeatures(rb, rb.pad_features(np.asarray(feats, np.float32)))
        t = time.perf_counter()
        self.stem.seconds = 0.0
        x0 = feats.map_rows(self.stem, self.stem.width, self.stem.dtype)
        return_freed_heap()     # the chunks read and the stem's outputs: ~0.2 GB kept by glibc otherwise
        total = time.perf_counter() - t
        inputs = rb.engine_inputs(self.cfg)
        inputs[self.stem.output] = x0
        return inputs, {"stem": self.stem.seconds, "read_features": total - self.stem.seconds}
