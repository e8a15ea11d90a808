"""Slide -> tissue tiles -> encoder (batched, streaming) -> features + coords -> SPAN -> outputs.

Per slide, under ``output_dir/<slide stem>/``: ``<slide stem>.h5`` (the features; named after the
slide because the official SPAN loader and TRIDENT/CLAM readers name a slide by its h5's basename;
see outputs/h5.py),
``embedding.npy`` (slide embedding), ``heatmap.png``, ``tiles.geojson`` and, written last,
``result.json`` -- its presence marks the slide done (``resume``). A failed slide gets
``error.json`` instead (not a done marker: resume retries it). ``output_dir/summary.csv``
lists every slide with its status and, for failures, the error. Every file is written
atomically. The encoder is anything with ``feature_dim`` and ``__call__(uint8 (B,224,224,3))
-> (B, F) float32`` (``encoders.runner.OnnxEncoder``); the backend follows backends.base.Backend.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from .backends.base import Backend, SpanResult
from .errors import ConfigError, SlideError, SpanDeployError
from .outputs.atomic import atomic_path, ensure_dir
from .outputs.geojson import write_regions_geojson, write_tiles_geojson
from .outputs.h5 import clam_level_attrs, write_features_h5
from .outputs.heatmap import write_heatmap_png
from .outputs.lock import LOCK_NAME, owner, release, remove_stale_temps, try_lock
from .outputs.prediction import prediction_dict
from .outputs.results import read_slide_json, write_slide_json, write_summary_csv
from .slide import TILE, SlideReader, TileGrid, prefetch_batches, tile_slide
from .slide.reader import DEFAULT_TARGET_MPP
from .slide.tiling import DEFAULT_TISSUE_THRESHOLD

HEATMAP_SIDE = 1024                 # heatmap thumbnail: longest side, px


class Encoder(Protocol):
    name: str
    feature_dim: int

    def __call__(self, tiles: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SlideOptions:
    batch_size: int = 64
    workers: int = 2
    target_mpp: float = DEFAULT_TARGET_MPP
    mpp: float | None = None                 # level-0 µm/px override (slides without metadata)
    tissue_threshold: float = DEFAULT_TISSUE_THRESHOLD
    tissue_mode: str = "auto"                # auto | brightfield | fluorescence
    heatmap: bool = True
    geojson: bool = True
    progress: bool = False
    threshold: float | None = None          # segmentation: override the model's threshold


# --- checks -------------------------------------------------------------------------------
def check_feature_dims(encoder: Encoder, backend: Backend) -> None:
    """Fail before reading any slide if encoder output and model input disagree."""
    fe, fm = int(encoder.feature_dim), int(backend.feat_dim)
    if fe != fm:
        raise ConfigError(f"the encoder gives {fe}-d features but the SPAN model expects {fm}-d "
                          f"(encoder {encoder.name}). Use the "
                          "encoder the model was trained with (e.g. R50 -> 1024, CONCH -> 512).")


def run_settings(opts: SlideOptions, encoder: Encoder, backend: Backend) -> dict[str, Any]:
    """What decides a slide's outputs; --resume redoes a slide whose result.json has others.
    (Model identity: the backend's name, the encoder's name and the model config, not the weights.)"""
    import hashlib
    import json as _json

    cfg = _json.dumps(backend.cfg.to_dict(), sort_keys=True, default=str).encode()
    return {"target_mpp": opts.target_mpp, "mpp": opts.mpp, "tissue_threshold": opts.tissue_threshold,
            "tissue_mode": opts.tissue_mode, "threshold": opts.threshold, "encoder": encoder.name,
            "backend": backend.name, "model_config_sha256": hashlib.sha256(cfg).hexdigest()[:16]}


# --- features -----------------------------------------------------------------------------
class Cancelled(SpanDeployError):
    """The caller's cancel event was set; nothing of the slide was written."""

    exit_code = 130


ProgressCallback = Callable[[str, int, int], None]   # (stage, done, total): "tiles" counts tiles


def check_cancel(cancel: threading.Event | None, path: str | os.PathLike) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"{path}: cancelled")


def extract_features(reader: SlideReader, coords: np.ndarray, encoder: Encoder,
                     batch_size: int = 64, workers: int = 2, progress: bool = False,
                     callback: ProgressCallback | None = None,
                     cancel: threading.Event | None = None) -> np.ndarray:
    """(N, F) float32 features of the tiles at level-0 ``coords``, read while encoding.

    ``callback("tiles", done, total)`` after each batch; ``cancel`` set -> Cancelled between batches."""
    out = np.empty((len(coords), int(encoder.feature_dim)), np.float32)
    batches = prefetch_batches(reader.read_tile, coords, batch_size, workers)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, total=-(-len(coords) // batch_size), unit="batch",
                       desc=reader.path.name, leave=False)
    done = 0
    try:
        for rows, tiles in batches:
            check_cancel(cancel, reader.path)
            f = encoder(tiles)
            if f.shape != (len(tiles), out.shape[1]):
                raise ConfigError(f"encoder returned {f.shape} for {len(tiles)} tiles; expected "
                                  f"(B, {out.shape[1]}).")
            out[rows] = f
            done += len(tiles)
            if callback is not None:
                callback("tiles", done, len(coords))
    finally:
        close = getattr(batches, "close", None)   # stop the prefetching readers on an early exit
        if close is not None:
            close()
    return out


def _prediction(result: SpanResult, threshold: float | None = None) -> dict[str, Any]:
    return prediction_dict(result, threshold)


def _check_result(result: SpanResult, n: int, path: Path) -> None:
    if np.asarray(result.patch_scores).shape != (n,):
        raise SpanDeployError(f"backend returned patch_scores of shape "
                              f"{np.asarray(result.patch_scores).shape} for {n} tiles ({path}).")


# --- one slide ----------------------------------------------------------------------------
def process_slide(path: str | os.PathLike, encoder: Encoder, backend: Backend,
                  slide_dir: str | os.PathLike, opts: SlideOptions = SlideOptions(),
                  settings: dict[str, Any] | None = None, callback: ProgressCallback | None = None,
                  cancel: threading.Event | None = None) -> dict[str, Any]:
    """Run one slide end to end and write its outputs; returns the result record.

    ``callback(stage, done, total)``: "tiling" (0/1, 1/1), "tiles" per encoded batch, "span"
    (0/1, 1/1), "writing" (0/1, 1/1). ``cancel`` is checked between stages and batches; a cancelled
    slide raises Cancelled before its first output file is written."""
    path, slide_dir = Path(path), Path(slide_dir)
    note = callback or (lambda stage, done, total: None)
    t0 = time.perf_counter()
    with SlideReader(path, opts.target_mpp, opts.mpp) as reader:
        note("tiling", 0, 1)
        grid = tile_slide(reader, opts.tissue_threshold, opts.tissue_mode)
        note("tiling", 1, 1)
        t1 = time.perf_counter()
        feats = extract_features(reader, grid.coords, encoder, opts.batch_size, opts.workers,
                                 opts.progress, callback, cancel)
        t2 = time.perf_counter()
        check_cancel(cancel, path)
        thumb = reader.read_thumbnail(HEATMAP_SIDE) if opts.heatmap else None
    c = reader.choice
    geometry = {"patch_size_level0": c.step0, "patch_level": c.level, "target_mpp": opts.target_mpp,
                "mpp": c.mpp, "level0_mpp": c.mpp0, "mpp_source": c.mpp_source,
                "level0_width": reader.dimensions[0], "level0_height": reader.dimensions[1],
                "tissue_mode": grid.mask.mode, "tissue_threshold": opts.tissue_threshold}
    # TRIDENT's coords attributes (magnification by the 10 / (µm/px) convention the reader uses)
    h5_attrs = {**{k: v for k, v in geometry.items() if k != "patch_level"}, **clam_level_attrs(c.level, c.read_size, c.step0, c.downsample),
                "slide": str(path), "encoder": encoder.name, "name": path.stem, "overlap": 0,
                "level0_magnification": round(10.0 / c.mpp0, 3), "target_magnification": round(10.0 / opts.target_mpp, 3)}
    h5_path = slide_dir / f"{path.stem}.h5"
    seg = backend.cfg.task == "segmentation"
    check_cancel(cancel, path)
    if not seg:   # written before SPAN runs, so a failing model still leaves the features
        write_features_h5(h5_path, feats, grid.coords, grid.cords, h5_attrs)
    t2b = time.perf_counter()
    note("span", 0, 1)
    result = backend.run(grid.cords, feats)
    note("span", 1, 1)
    note("writing", 0, 1)
    t3 = time.perf_counter()
    _check_result(result, len(grid), path)
    threshold = None
    if seg:       # one write, with the per-patch probabilities next to the features
        threshold = float(result.threshold if opts.threshold is None else opts.threshold)
        write_features_h5(h5_path, feats, grid.coords, grid.cords,
                          {**h5_attrs, "threshold": threshold},
                          extra={"patch_probabilities": np.asarray(result.patch_scores, np.float32),
                                 "patch_logits": np.asarray(result.patch_logits, np.float32)})
    _write_maps(slide_dir, grid, result.patch_scores, opts, thumb, threshold, c.mpp0)
    with atomic_path(slide_dir / "embedding.npy") as tmp:
        np.save(tmp, np.asarray(result.slide_embedding, np.float32))
    record = {
        "slide": str(path), "status": "ok", "n_tiles": len(grid), "feature_dim": feats.shape[1],
        "encoder": encoder.name,
        "backend": backend.name, "task": result.task,
        "prediction": _prediction(result, threshold),
        **({} if seg else {"logits": np.asarray(result.logits).tolist()}),
        "geometry": geometry,
        "settings": settings if settings is not None else run_settings(opts, encoder, backend),
        "timings": {"tiling": t1 - t0, "features": t2 - t1, "span": t3 - t2b,
                    "tiles_per_s": len(grid) / max(t2 - t1, 1e-9), **result.timings},
        "outputs": {k: str(slide_dir / v) for k, v in
                    (("features", h5_path.name), ("embedding", "embedding.npy"),
                     ("heatmap", "heatmap.png"), ("geojson", "tiles.geojson"))
                    + ((("regions", "regions.geojson"),) if seg and opts.geojson else ())},
    }
    record["seconds"] = time.perf_counter() - t0
    write_slide_json(slide_dir / "result.json", record)     # last: marks the slide done
    (slide_dir / "error.json").unlink(missing_ok=True)
    note("writing", 1, 1)
    return record


def _write_maps(slide_dir: Path, grid: TileGrid, scores: np.ndarray, opts: SlideOptions,
               thumb: tuple[Image.Image, float] | None, threshold: float | None = None,
               mpp0: float | None = None) -> None:
    """Heatmap and GeoJSON. ``threshold`` set (segmentation): ``scores`` are probabilities, drawn
    on a fixed 0-1 scale; tiles carry a Tumor / Other class; regions.geojson has the merged
    positive regions. Otherwise the scores are relative (min-max per slide)."""
    seg = threshold is not None
    if thumb is not None:
        title = (f"SPAN segmentation: P(tumour) per tile, fixed scale 0-1; positive at >= {threshold:g}"
                 if seg else None)
        write_heatmap_png(slide_dir / "heatmap.png", thumb[0], thumb[1], grid.grid, grid.step0, scores,
                          scale=(0.0, 1.0) if seg else None, title=title, threshold=threshold)
    if opts.geojson:
        write_tiles_geojson(slide_dir / "tiles.geojson", grid.coords, grid.step0, scores,
                            measurement="tumor_probability" if seg else "span_score", threshold=threshold)
        if seg:
            write_regions_geojson(slide_dir / "regions.geojson", grid.grid, grid.coords, grid.step0, scores,
                                  threshold, mpp0)


# --- many slides --------------------------------------------------------------------------
def slide_dirs(paths: list[Path], output_dir: Path) -> list[Path]:
    """output_dir/<stem>; two slides with the same stem are refused before anything runs."""
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems and stems[p.stem] != p:
            raise ConfigError(f"two slides share the name {p.stem!r} ({stems[p.stem]} and {p}); "
                              "their outputs would collide. Rename one or run them separately.")
        stems[p.stem] = p
    return [output_dir / p.stem for p in paths]


def run_slides(paths: Iterable[str | os.PathLike], encoder: Encoder, backend: Backend,
               output_dir: str | os.PathLike, batch_size: int = 64, workers: int = 2,
               skip_errors: bool = False, resume: bool = False,
               options: SlideOptions | None = None) -> list[dict[str, Any]]:
    """Process slides; returns one record per slide (status ok | skipped | failed).

    Without ``skip_errors`` the first failure is recorded in summary.csv and re-raised.
    """
    paths = [Path(p) for p in paths]
    output_dir = Path(output_dir)
    opts = replace(options or SlideOptions(), batch_size=batch_size, workers=workers)
    check_feature_dims(encoder, backend)
    dirs = slide_dirs(paths, output_dir)
    ensure_dir(output_dir)          # after the checks: a refused run leaves no folder behind
    settings = run_settings(opts, encoder, backend)
    records: list[dict[str, Any]] = []
    summary = output_dir / "summary.csv"
    for path, sdir in zip(paths, dirs):
        done = sdir / "result.json"
        lock = try_lock(sdir)
        if lock is None:     # another live run is on this slide right now
            info = owner(sdir / LOCK_NAME) or {}
            records.append({"slide": str(path), "status": "skipped", "seconds": 0.0,
                            "error": f"locked by another run (pid {info.get('pid')} on {info.get('host')})"})
            print(f"note: {path.name} is being processed by another run (pid {info.get('pid')}): skipped",
                  file=sys.stderr)
            continue
        if resume and done.is_file():   # checked under the lock: a concurrent run may just have finished it
            rec = read_slide_json(done)
            if rec.get("settings") == settings:
                release(lock)
                records.append({**rec, "status": "skipped", "result_json": str(done), "seconds": 0.0})
                continue
            changed = sorted(k for k in settings if (rec.get("settings") or {}).get(k) != settings[k])
            print(f"note: {path.name} was done with other settings ({', '.join(changed)}): redoing it",
                  file=sys.stderr)
        remove_stale_temps(sdir)
        t0 = time.perf_counter()
        try:
            rec = process_slide(path, encoder, backend, sdir, opts, settings)
            records.append({**rec, "result_json": str(done)})
        except Exception as e:
            rec = {"slide": str(path), "status": "failed", "error_type": type(e).__name__,
                   "error": str(e), "seconds": time.perf_counter() - t0}
            if not isinstance(e, SpanDeployError):
                rec["traceback"] = traceback.format_exc()
            write_slide_json(sdir / "error.json", rec)
            records.append(rec)
            if not skip_errors:
                release(lock)
                write_summary_csv(summary, records)
                raise
        finally:
            release(lock)
        write_summary_csv(summary, records)
    write_summary_csv(summary, records)
    return records


# --- embedding API for vendor apps ----------------------------------------------------------
TileSource = str | os.PathLike | Iterable[tuple[np.ndarray, tuple[int, int]]]


def tile_cell(tile: np.ndarray, x: int, y: int, step: int) -> tuple[int, int]:
    """The grid cell of a caller's tile (uint8 (224, 224, 3) RGB at the model's resolution, top-left
    corner (x, y) in a unit whose grid step is ``step``); a wrong tile is one clear SlideError."""
    if tile.dtype != np.uint8 or tile.shape != (TILE, TILE, 3):
        raise SlideError(f"tile at ({x}, {y}) is {tile.dtype} {tile.shape}; expected uint8 ({TILE}, {TILE}, 3) "
                         "RGB at the model's resolution (0.5 µm/px by default). Resize your tiles first.")
    xi, yi = int(x), int(y)
    if xi < 0 or yi < 0 or xi % step or yi % step:
        raise SlideError(f"tile coordinate ({x}, {y}) is not on the {step}-px grid (not a non-negative multiple "
                         f"of tile_step {step}); SPAN needs tiles on one regular grid (pass tile_step = your "
                         "grid step).")
    return xi // step, yi // step


def _batched(tiles: Iterable[tuple[np.ndarray, tuple[int, int]]], batch_size: int, step: int
             ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    buf: list[np.ndarray] = []
    xy: list[tuple[int, int]] = []
    for tile, (x, y) in tiles:
        tile = np.asarray(tile)
        xy.append(tile_cell(tile, x, y, step))
        buf.append(tile)
        if len(buf) == batch_size:
            yield np.stack(buf), np.asarray(xy, np.int64)
            buf, xy = [], []
    if buf:
        yield np.stack(buf), np.asarray(xy, np.int64)


def embed_slide(source: TileSource, encoder: Encoder, backend: Backend, batch_size: int = 64,
                workers: int = 2, mpp: float | None = None, tile_step: int = TILE,
                options: SlideOptions | None = None) -> np.ndarray:
    """The SPAN slide embedding (E,) of a slide file or of your own tiles.

    ``source``: a slide path (tiled as ``run`` does; ``options`` for resolution / tissue
    settings), or an iterable of ``(tile, (x, y))`` with tile uint8 (224, 224, 3)
    RGB at the target resolution and (x, y) its top-left corner in any pixel unit in which
    the tile grid step is ``tile_step`` (default 224: target-resolution px).
    """
    check_feature_dims(encoder, backend)
    if isinstance(source, (str, os.PathLike)):
        o = options or SlideOptions()
        with SlideReader(source, o.target_mpp, mpp if mpp is not None else o.mpp) as reader:
            grid = tile_slide(reader, o.tissue_threshold, o.tissue_mode)
            feats = extract_features(reader, grid.coords, encoder, batch_size, workers)
        cords = grid.cords
    else:
        fs, gs = [], []
        for tiles, g in _batched(source, batch_size, tile_step):
            fs.append(np.asarray(encoder(tiles), np.float32))
            gs.append(g)
        if not fs:
            raise SlideError("no tiles given to embed_slide; pass at least one (tile, (x, y)).")
        feats, cords = np.concatenate(fs), np.concatenate(gs) * TILE
        if len(np.unique(cords, axis=0)) != len(cords):
            raise SlideError("duplicate tile coordinates given to embed_slide; each grid cell once.")
    return np.asarray(backend.run(cords, feats).slide_embedding, np.float32)
