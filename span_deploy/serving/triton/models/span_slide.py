"""``span_slide`` (BLS): one slide's TILES (N, 224, 224, 3) uint8 + COORDS (N, 2) int64 ->
``patch_encoder`` in chunks of ``encoder_chunk`` tiles, up to ``encoder_inflight`` chunks in flight
at once (so several encoder instances, or the encoder's dynamic batcher, work in parallel; bounded,
so a large slide is not copied into shared memory all at once) -> ``span_features`` -> the same
outputs as span_features."""
from __future__ import annotations

import asyncio

import numpy as np

from .common import ModelArgs, RequestError, check_slide, error_response, input_array, pb


class TritonPythonModel:
    def initialize(self, args):
        a = ModelArgs(args)
        self.chunk = int(a.param("encoder_chunk", "64"))
        self.inflight = max(1, int(a.param("encoder_inflight", "2")))
        self.encoder = a.param("encoder_model", "patch_encoder")
        self.features_model = a.param("features_model", "span_features")
        self.outputs = [o["name"] for o in a.config["output"]]

    async def _call(self, model: str, inputs: list, outputs: list[str]):
        u = pb()
        resp = await u.InferenceRequest(model_name=model, inputs=inputs,
                                        requested_output_names=outputs).async_exec()
        if resp.has_error():
            raise RequestError(f"{model}: {resp.error().message()}")
        return resp

    async def _encode(self, tiles: np.ndarray, gate: asyncio.Semaphore) -> np.ndarray:
        u = pb()
        async with gate:
            resp = await self._call(self.encoder, [u.Tensor("TILES", np.ascontiguousarray(tiles))], ["FEATURES"])
            return u.get_output_tensor_by_name(resp, "FEATURES").as_numpy()

    async def run_one(self, request):
        u = pb()
        tiles = input_array(request, "TILES")
        coords = input_array(request, "COORDS")
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[1:] != (224, 224, 3):
            raise RequestError(f"TILES must be uint8 (N, 224, 224, 3), got {tiles.dtype} {tuple(tiles.shape)}")
        check_slide(tiles, coords, "TILES")
        gate = asyncio.Semaphore(self.inflight)
        feats = await asyncio.gather(*[self._encode(tiles[s:s + self.chunk], gate)
                                       for s in range(0, len(tiles), self.chunk)])
        feats = np.concatenate(feats).astype(np.float32, copy=False)
        resp = await self._call(self.features_model, [u.Tensor("FEATURES", feats), u.Tensor("COORDS", coords)],
                                self.outputs)
        return [u.Tensor(n, u.get_output_tensor_by_name(resp, n).as_numpy()) for n in self.outputs]

    async def execute(self, requests):
        u = pb()
        responses = []
        for request in requests:
            try:
                responses.append(u.InferenceResponse(output_tensors=await self.run_one(request)))
            except Exception as e:  # noqa: BLE001 - one bad slide must not take the model down
                responses.append(error_response(str(e) if isinstance(e, RequestError)
                                                else f"{type(e).__name__}: {e}"))
        return responses
