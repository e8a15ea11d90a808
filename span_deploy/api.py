"""The Python API for vendor apps: open a model once, then predict from features in memory, embed
or process whole slides, or stream a scan's tiles into a session.

    import span_deploy
    model = span_deploy.load("models/cpu", threads=4)        # model dir, model.onnx or model.engine
    pred = model.predict(features, coords)                   # (N, F) float32, (N, 2) official cords
    pred.probabilities, pred.slide_embedding, pred.patch_scores

Units: ``coords`` are the official SPAN ``cords`` -- grid index x 224 -- unless ``coords_step``
says otherwise (TRIDENT's level-0 pixel ``coords`` with ``coords_step=patch_size_level0``); tiles
are 224 x 224 uint8 RGB at the model's resolution (``target_mpp`` µm/px, 0.5 = 20x); times are
seconds.

Thread safety: one ``Model`` may be shared by threads. ``predict`` keeps no state between calls
(the rulebook is built per call; ONNX Runtime's and TensorRT's run calls on one session are
thread-safe), so concurrent calls give the results serial calls give (tested). A ``SlideSession``
belongs to one producer thread.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends.base import Backend, SpanResult
from .config import SpanConfig
from .errors import ConfigError
from .features import check_slide_arrays
from .outputs.prediction import prediction_dict, softmax, survival_outputs
from .pipeline import Cancelled, ProgressCallback, SlideOptions

GRID_STEP = 224          # the official cords' unit: one grid cell = 224

__all__ = ["Cancelled", "Model", "Prediction", "load"]


@dataclass(frozen=True)
class Prediction:
    """One slide's outputs in memory. Per-patch arrays follow the caller's row order."""
    task: str                               # classification | survival | segmentation
    logits: np.ndarray                      # (C,) float32 (segmentation: empty)
    slide_embedding: np.ndarray             # (E,) float32
    stage_embeddings: list[np.ndarray]      # per stage (G, D_s): its global tokens
    patch_scores: np.ndarray                # (N,) heatmap score (segmentation: probability)
    patch_features: np.ndarray              # (N, D) stage-0 output per patch
    timings: dict[str, float]               # seconds: rulebook, compute, total
    probabilities: np.ndarray | None = None     # classification: softmax(logits)
    predicted_class: int | None = None          # classification
    hazards: np.ndarray | None = None           # survival: sigmoid(logits)
    survival: np.ndarray | None = None          # survival: cumprod(1 - hazards)
    risk: float | None = None                   # survival: -sum(survival)
    patch_logits: np.ndarray | None = None      # segmentation: (N,)
    patch_labels: np.ndarray | None = None      # segmentation: (N,) 0/1 at threshold
    threshold: float | None = None              # segmentation
    result: SpanResult | None = field(default=None, repr=False)

    @property
    def num_patches(self) -> int:
        return int(self.patch_scores.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """The JSON `span-deploy predict` prints."""
        return prediction_dict(self.result, self.threshold if self.task == "segmentation" else None)

    @classmethod
    def from_result(cls, r: SpanResult, threshold: float | None = None) -> "Prediction":
        common = dict(task=r.task, logits=np.asarray(r.logits, np.float32),
                      slide_embedding=np.asarray(r.slide_embedding, np.float32),
                      stage_embeddings=[np.asarray(g, np.float32) for g in r.stage_globals],
                      patch_scores=np.asarray(r.patch_scores, np.float32),
                      patch_features=np.asarray(r.patch_features, np.float32), timings=dict(r.timings), result=r)
        if r.task == "segmentation":
            t = float(r.threshold if threshold is None else threshold)
            p = common["patch_scores"]
            return cls(**common, patch_logits=np.asarray(r.patch_logits, np.float32),
                       patch_labels=(p >= np.float32(t)).astype(np.int8), threshold=t)
        if r.task == "survival":
            s = survival_outputs(r.logits)
            return cls(**common, hazards=np.asarray(s["hazards"], np.float32),
                       survival=np.asarray(s["survival"], np.float32), risk=float(s["risk"]))
        p = softmax(r.logits)
        return cls(**common, probabilities=p, predicted_class=int(np.argmax(p)))


class Model:
    """A deployed SPAN model (and optionally its patch encoder), opened once. Use ``load``."""

    def __init__(self, backend: Backend, encoder=None, source: str | os.PathLike | None = None):
        self.backend = backend
        self.encoder = encoder
        self.source = source

    # --- what it is ---------------------------------------------------------------------
    @property
    def config(self) -> SpanConfig:
        return self.backend.cfg

    @property
    def task(self) -> str:
        return self.backend.cfg.task

    @property
    def feature_dim(self) -> int:
        """F, the width of the patch features the model takes."""
        return int(self.backend.feat_dim)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def __repr__(self) -> str:
        return f"Model({self.source!s}, task={self.task}, backend={self.backend_name}, F={self.feature_dim})"

    # --- features -> prediction -------------------------------------------------------------
    def predict(self, features: np.ndarray, coords: np.ndarray, coords_step: float = GRID_STEP,
                threshold: float | None = None) -> Prediction:
        """One slide from its patch features (N, F) float32 and coordinates (N, 2) (x, y).

        ``coords_step``: the grid step in ``coords``' unit -- 224 for the official ``cords``
        (default), ``patch_size_level0`` for level-0 pixel ``coords`` (TRIDENT / CLAM h5).
        ``threshold`` (segmentation): positive at probability >= it [default: the model's]."""
        feats, coords = check_slide_arrays(features, coords, "predict() arguments", self.feature_dim)
        if threshold is not None and not 0.0 < float(threshold) < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), not {threshold!r}")
        if threshold is not None and self.task != "segmentation":
            raise ConfigError(f"threshold applies to segmentation models; this one is {self.task}")
        if not np.isfinite(coords_step) or coords_step <= 0:
            raise ConfigError(f"coords_step must be a positive number (grid step in coords' unit), not {coords_step!r}")
        cords = coords if coords_step == GRID_STEP else to_cords(coords, coords_step)
        return Prediction.from_result(self.backend.run(cords, feats), threshold)

    # --- slides (need the encoder) -----------------------------------------------------------
    def _need_encoder(self):
        if self.encoder is None:
            raise ConfigError("this needs the patch encoder: load(..., encoder='encoder.onnx'), or a model "
                              "directory exported with --encoder")
        return self.encoder

    def embed_slide(self, source, batch_size: int = 64, workers: int = 2, mpp: float | None = None,
                    tile_step: int = GRID_STEP, options: SlideOptions | None = None) -> np.ndarray:
        """The slide embedding (E,) of a slide file, or of an iterable of ``(tile, (x, y))``
        (tile uint8 (224, 224, 3) RGB at the model's resolution; (x, y) in a unit whose grid step
        is ``tile_step``)."""
        from .pipeline import embed_slide
        return embed_slide(source, self._need_encoder(), self.backend, batch_size, workers, mpp, tile_step, options)

    def process_slide(self, path: str | os.PathLike, output_dir: str | os.PathLike,
                      options: SlideOptions | None = None, progress: ProgressCallback | None = None,
                      cancel: threading.Event | None = None) -> dict[str, Any]:
        """Tile, encode and predict one slide file, writing what `span-deploy run` writes under
        ``output_dir/<slide stem>/`` (result.json, heatmap.png, GeoJSON, the features h5,
        embedding.npy); returns result.json's record.

        ``progress(stage, done, total)`` is called from this thread: "tiling", "tiles" (per
        encoded batch, done/total in tiles), "span", "writing". Setting ``cancel`` stops the slide
        between batches with ``Cancelled``; a cancelled slide leaves no result files."""
        from .outputs.atomic import ensure_dir
        from .pipeline import check_feature_dims, process_slide

        enc = self._need_encoder()
        check_feature_dims(enc, self.backend)
        path = Path(path)
        slide_dir = Path(output_dir) / path.stem
        ensure_dir(Path(output_dir))
        created = not slide_dir.exists()
        try:
            return process_slide(path, enc, self.backend, slide_dir, options or SlideOptions(),
                                 callback=progress, cancel=cancel)
        except Cancelled:
            if created and slide_dir.is_dir() and not any(slide_dir.iterdir()):
                slide_dir.rmdir()
            raise

    def slide_session(self, tile_step: int = GRID_STEP, batch_size: int = 64, max_pending_batches: int = 4):
        """A scan-time session: feed tiles as the scanner produces them, ``finish()`` for the
        prediction (see span_deploy.scan.SlideSession)."""
        from .scan import SlideSession
        return SlideSession(self._need_encoder(), self, tile_step, batch_size, max_pending_batches)


def to_cords(coords: np.ndarray, step: float) -> np.ndarray:
    """Level-0 (or any unit) grid coordinates with grid step ``step`` -> official cords (x 224)."""
    grid = np.rint(np.asarray(coords, np.float64) / float(step))
    if np.abs(grid * float(step) - coords).max(initial=0.0) > max(1.0, 0.01 * float(step)):
        raise ConfigError(f"coordinates are not on a grid of step {step:g} (in their unit); pass the "
                          "step the tiles were cut with (coords_step = patch_size_level0 for level-0 px)")
    return grid.astype(np.int64) * GRID_STEP


def load(model: str | os.PathLike, device: str = "cpu", threads: int | None = None,
         encoder: str | os.PathLike | None = None, backend: str | None = None,
         config: str | os.PathLike | None = None, plugin_lib: str | os.PathLike | None = None) -> Model:
    """Open a SPAN model once: a model directory (``span-deploy export --target``), an exported
    ``model.onnx`` / ``model.engine``, or an official checkpoint with ``config`` (exported once
    into the cache; needs the export side).

    ``device``: cpu | cuda. ``threads``: intra-op threads [default: the runtime's]. ``encoder``:
    the patch encoder ONNX for slide work [default: the model directory's, or encoder.onnx next to
    the model file, when there]. ``backend``: ort | ort-portable | trt | torch [default: from the
    model]."""
    from .backends import open_backend
    from .encoders.runner import OnnxEncoder

    path = Path(model)
    if not path.exists():
        raise ConfigError(f"model not found: {path}")
    if config is not None:
        from .backends import available_backends
        name = backend or ("ort" if "ort" in available_backends() else "ort-portable")
        be = open_backend(name, checkpoint=path, config=config, device=device, threads=threads)
    else:
        be = open_backend(backend, model=path, device=device, threads=threads, plugin_lib=plugin_lib)
    from .deploy.model_dir import default_encoder
    enc_path = Path(encoder) if encoder is not None else default_encoder(path)
    enc = OnnxEncoder(enc_path, device=device, threads=threads) if enc_path is not None else None
    if enc is not None and int(enc.feature_dim) != int(be.feat_dim):
        raise ConfigError(f"the encoder {enc_path} gives {enc.feature_dim}-d features but the model expects "
                          f"{be.feat_dim}-d; use the encoder the model was trained with")
    return Model(be, enc, path)

