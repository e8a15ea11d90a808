"""``patch_encoder``: TILES (B, 224, 224, 3) uint8 RGB -> FEATURES (B, F) float32.

The Python-backend fallback (the pytriton server build ships no onnxruntime backend): the
requests the dynamic batcher groups are run as one ONNX Runtime batch, then split again.
"""
from __future__ import annotations

import numpy as np

from .common import ModelArgs, error_response, input_array, pb


class TritonPythonModel:
    def initialize(self, args):
        from ....encoders.runner import OnnxEncoder

        a = ModelArgs(args)
        self.encoder = OnnxEncoder(a.version_dir / a.param("model_file", "model.onnx"), device=a.device,
                                   threads=a.threads)

    def execute(self, requests):
        u = pb()
        tiles, ok = [], []
        responses: list = [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                t = input_array(request, "TILES")
                if t.dtype != np.uint8 or t.ndim != 4 or t.shape[1:] != (224, 224, 3):
                    raise ValueError(f"TILES must be uint8 (B, 224, 224, 3), got {t.dtype} {tuple(t.shape)}")
                tiles.append(t)
                ok.append(i)
            except Exception as e:  # noqa: BLE001
                responses[i] = error_response(str(e))
        if tiles:
            try:
                feats = self.encoder(np.concatenate(tiles) if len(tiles) > 1 else tiles[0])
                bounds = np.cumsum([0] + [len(t) for t in tiles])
                for k, i in enumerate(ok):
                    f = np.ascontiguousarray(feats[bounds[k]:bounds[k + 1]], np.float32)
                    responses[i] = u.InferenceResponse(output_tensors=[u.Tensor("FEATURES", f)])
            except Exception as e:  # noqa: BLE001
                for i in ok:
                    responses[i] = error_response(f"encoder failed: {type(e).__name__}: {e}")
        return responses

    def finalize(self):
        self.encoder = None
