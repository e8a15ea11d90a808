"""``span_features``: one slide's FEATURES (N, F) float32 + COORDS (N, 2) int64 -> SPAN outputs.

COORDS are the official 224-grid ``cords`` (grid index * 224, what the official h5 ``cords`` and
``Backend.run`` take), not the level-0 pixel ``coords``. The model runs with span-deploy's own
``open_backend(model=...)``: the host rulebook, then ONNX Runtime (with the custom-op library for a
plugin export). One request is one slide (no batching across slides).
"""
from __future__ import annotations

import numpy as np

from .common import ModelArgs, RequestError, check_slide, error_response, input_array, pb, result_tensors


class TritonPythonModel:
    def initialize(self, args):
        from ....backends import open_backend

        a = ModelArgs(args)
        self.backend = open_backend(model=a.version_dir / a.param("model_file", "model.onnx"),
                                    device=a.device, threads=a.threads)
        self.task = self.backend.cfg.task

    def run_one(self, request):
        feats = input_array(request, "FEATURES")
        coords = input_array(request, "COORDS")
        if feats.ndim != 2 or feats.shape[1] != self.backend.feat_dim:
            raise RequestError(f"FEATURES must be (N, {self.backend.feat_dim}), got {tuple(feats.shape)}")
        check_slide(feats, coords, "FEATURES")
        bad = ~np.isfinite(feats).all(axis=1)
        if bad.any():
            raise RequestError(f"{int(bad.sum())} patch(es) have NaN/Inf features "
                               f"(first: row {int(np.flatnonzero(bad)[0])})")
        return self.backend.run(coords, feats.astype(np.float32, copy=False))

    def execute(self, requests):
        from ....errors import SpanDeployError

        responses = []
        for request in requests:
            try:
                r = self.run_one(request)
                responses.append(pb().InferenceResponse(output_tensors=result_tensors(r, self.task)))
            except (RequestError, SpanDeployError) as e:
                responses.append(error_response(str(e)))
            except Exception as e:  # noqa: BLE001 - one bad slide must not take the model down
                responses.append(error_response(f"{type(e).__name__}: {e}"))
        return responses

    def finalize(self):
        self.backend = None
