"""The model directory: one folder per deployed model, described by its ``deploy.json``.

    DIR/model.onnx         the SPAN export (plugin or portable attention, the target's precision)
    DIR/model.engine       the TensorRT engine (+ model.engine.json), once `build-engine DIR` ran
    DIR/encoder.onnx       the patch encoder, when given at export
    DIR/timing.cache       TensorRT's timing cache (trt targets), reused by rebuilds
    DIR/deploy.json        target, versions, the ONNX's span-deploy metadata, the plugin library
                           each backend needs

``predict/run/embed --model DIR`` open it: the target's backend (``--backend`` overrides, e.g. ort on
a trt target's ONNX where TensorRT is missing), the encoder from the folder. A directory is written
beside its final place and renamed in one step, so a failed export leaves nothing behind.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import BackendError, ConfigError, OutputError
from ..metadata import read_metadata
from ..outputs.atomic import atomic_write_text, ensure_dir
from .targets import Target

DEPLOY_FILE = "deploy.json"
FORMAT = "span-deploy-model-dir"
FORMAT_VERSION = 1
ONNX_FILE, ENGINE_FILE, ENCODER_FILE = "model.onnx", "model.engine", "encoder.onnx"
# What each backend loads besides the model files (built by tools/build_native.sh).
PLUGIN_LIBRARIES = {"ort": "libspan_deploy_ops.so", "trt": "libspan_deploy_trt_plugin.so"}


@dataclass(frozen=True)
class ModelDir:
    path: Path
    doc: dict
    target: Target

    @property
    def onnx(self) -> Path:
        return self.path / self.doc["files"]["onnx"]

    @property
    def engine(self) -> Path | None:
        f = self.doc["files"].get("engine")
        return self.path / f if f else None

    @property
    def encoder(self) -> Path | None:
        f = self.doc["files"].get("encoder")
        return self.path / f if f else None

    def model_for(self, backend: str | None) -> tuple[str, Path]:
        """(backend, model file) to open: the target's backend unless ``backend`` is given."""
        backend = backend or self.target.backend
        attention = self.doc["metadata"]["attention"]
        if backend == "trt":
            if self.engine is None:
                raise BackendError(f"{self.path}: target {self.target.name} runs on TensorRT but the folder holds no "
                                   f"engine yet; build it on the machine that will run it: `span-deploy build-engine "
                                   f"{self.path}` (or run its ONNX with --backend "
                                   f"{'ort' if attention == 'plugin' else 'ort-portable'})")
            return "trt", self.engine
        if backend == "torch":
            raise BackendError(f"{self.path} is a deployed model; the torch backend needs --checkpoint and --config")
        want = "ort" if attention == "plugin" else "ort-portable"
        if backend == "ort" and attention == "portable":
            backend = "ort-portable"                 # the target's 'ort' names the runtime, not the graph
        if backend != want:
            raise BackendError(f"{self.path}: its model.onnx has {attention} attention, which runs on {want}, "
                               f"not {backend}")
        return backend, self.onnx


def default_encoder(model: str | Path) -> Path | None:
    """The patch encoder that goes with ``model``: a model directory's own, else encoder.onnx next
    to a model file; None when there is none."""
    model = Path(model)
    if model.is_dir():
        return read_model_dir(model).encoder
    guess = model.with_name(ENCODER_FILE)
    return guess if guess.is_file() and guess != model else None


def read_model_dir(path: str | Path) -> ModelDir:
    """Read and check DIR/deploy.json and the files it names; damage is one clear error."""
    path = Path(path)
    f = path / DEPLOY_FILE
    if not f.is_file():
        raise ConfigError(f"{path} is a folder but not a span-deploy model directory (no {DEPLOY_FILE}); "
                          "write one with `span-deploy export --target NAME -o DIR`, or pass a model file")
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{f}: not readable JSON ({type(e).__name__}); re-export the model directory") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{f}: not a span-deploy deploy.json (format {FORMAT!r} missing)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{f}: deploy.json format version {doc.get('format_version')!r}; this span-deploy reads "
                          f"version {FORMAT_VERSION}; re-export the model directory")
    files = doc.get("files")
    if not isinstance(files, dict) or not isinstance(files.get("onnx"), str) or \
            not isinstance(doc.get("metadata"), dict) or doc["metadata"].get("attention") not in ("plugin", "portable"):
        raise ConfigError(f"{f}: deploy.json is damaged (files / metadata missing); re-export the model directory")
    for key in ("onnx", "engine", "encoder"):
        name = files.get(key)
        if name is None and key != "onnx":
            continue
        if not isinstance(name, str) or Path(name).name != name:
            raise ConfigError(f"{f}: files.{key} must be a file name inside the folder, not {name!r}")
        if not (path / name).is_file():
            raise ConfigError(f"{path}: deploy.json names {name} ({key}) but the folder has no such file; "
                              "copy the whole folder, or re-export it")
    target = Target.from_dict(doc.get("target"), f"{f} (target)")
    return ModelDir(path, doc, target)


def versions() -> dict:
    """The versions that matter for reproducing this model directory (those importable here)."""
    from importlib import metadata as md

    out = {"python": platform.python_version(), "machine": platform.machine()}
    for dist in ("span-deploy", "span-deploy-export", "torch", "onnx", "onnxruntime", "onnxruntime-gpu",
                 "tensorrt", "polygraphy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def deploy_doc(target: Target, onnx_path: Path, encoder: bool) -> dict:
    meta = read_metadata(onnx_path)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": target.to_dict(),
        "files": {"onnx": ONNX_FILE, "engine": None, "encoder": ENCODER_FILE if encoder else None},
        # The library the deployed graph needs at run time: the ORT custom-op library for a plugin
        # ONNX on ONNX Runtime; on TensorRT the plugin library (unless serialised into the engine).
        "plugin_library": {"ort": PLUGIN_LIBRARIES["ort"] if meta["attention"] == "plugin" else None,
                           "trt": PLUGIN_LIBRARIES["trt"] if meta["attention"] == "plugin" else None},
        "versions": {"export": versions()},
        "metadata": meta,
    }


def write_model_dir(out: str | Path, target: Target, export_onnx: Callable[[Path], Path],
                    encoder: str | Path | None = None) -> ModelDir:
    """Export into a fresh folder next to ``out``, write deploy.json, then rename it to ``out``.

    ``export_onnx(path)`` writes the SPAN ONNX at ``path`` (the export side). ``out`` must not exist
    or be an empty folder: a model directory is written whole, never merged into an old one.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} already exists{'' if out.is_dir() else ' and is a file'}; a model directory is "
                          "written whole: choose a new path (or remove the old one)")
    if encoder is not None:
        encoder = Path(encoder)
        if not encoder.is_file():
            raise ConfigError(f"encoder ONNX not found: {encoder}")
    ensure_dir(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        export_onnx(tmp / ONNX_FILE)
        if encoder is not None:
            shutil.copyfile(encoder, tmp / ENCODER_FILE)
        doc = deploy_doc(target, tmp / ONNX_FILE, encoder is not None)
        atomic_write_text(tmp / DEPLOY_FILE, json.dumps(doc, indent=1) + "\n")
        os.chmod(tmp, 0o755)                      # mkdtemp makes 0700; a model folder is meant to be shared
        if out.is_dir():
            out.rmdir()                           # the empty folder it replaces
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_model_dir(out)


def record_engine(md: ModelDir, engine: Path, tensorrt_version: str) -> ModelDir:
    """deploy.json after `build-engine DIR`: the engine file and the TensorRT that built it."""
    doc = dict(md.doc)
    doc["files"] = {**doc["files"], "engine": engine.name}
    doc["versions"] = {**doc.get("versions", {}), "engine": {**versions(), "tensorrt": tensorrt_version}}
    atomic_write_text(md.path / DEPLOY_FILE, json.dumps(doc, indent=1) + "\n")
    return read_model_dir(md.path)
