"""ONNX -> serialized TensorRT engine (+ a JSON sidecar with the span-deploy metadata).

The TensorRT calls are kept thin (``build_engine``); every decision -- network flags, builder
flags, precision, profile shapes -- is made by pure functions tested without TensorRT.

Precision: TensorRT >= 11 has no weak typing, so every network is strongly typed and the engine
runs in the ONNX's own types; an fp16 engine then needs an fp16 export (``span-deploy export
--fp16``, which keeps LayerNorm and softmax statistics in fp32). On TensorRT 10 an fp16 ONNX is
built strongly typed (its fp32 islands stay fp32); ``--fp16`` on an fp32 ONNX falls back to the
weakly typed FP16 builder flag (TensorRT then picks per-layer precision). fp32 builds clear TF32,
so results match ONNX Runtime within ~1e-4.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import BackendError
from ...metadata import read_metadata
from ...outputs.atomic import atomic_write_bytes
from .plugin import import_tensorrt, load_plugin_library
from .profiles import Profile
from .sidecar import sidecar_doc, sidecar_path


def version_tuple(version: str) -> tuple[int, int]:
    parts = (version.split(".") + ["0"])[:2]
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except ValueError:
        raise BackendError(f"cannot read the TensorRT version {version!r}") from None


@dataclass(frozen=True)
class BuildPlan:
    precision: str                         # the engine's compute precision: fp32 or fp16
    network_flags: tuple[str, ...]         # trt.NetworkDefinitionCreationFlag names
    builder_flags: tuple[str, ...]         # trt.BuilderFlag names to set
    clear_flags: tuple[str, ...]           # trt.BuilderFlag names to clear
    notes: tuple[str, ...] = field(default=())


def plan_build(trt_version: str, onnx_precision: str, fp16: bool, has_strongly_typed: bool = True) -> BuildPlan:
    """Flags for one build. ``onnx_precision`` is the export's metadata precision (fp32 / fp16)."""
    if onnx_precision not in ("fp32", "fp16"):
        raise BackendError(f"unknown ONNX precision {onnx_precision!r} in the model metadata")
    major, _ = version_tuple(trt_version)
    net: list[str] = []
    if major < 10:
        net.append("EXPLICIT_BATCH")
    if major >= 11:
        # weak typing is gone: the graph's types are the engine's types
        if fp16 and onnx_precision == "fp32":
            raise BackendError(
                f"--fp16 asked for an fp32 ONNX, but TensorRT {trt_version} builds strongly typed networks only "
                "(no FP16 builder flag); export an fp16 model with `span-deploy export --fp16` and build that")
        net.append("STRONGLY_TYPED")
        clear = ("TF32",) if onnx_precision == "fp32" else ()
        return BuildPlan(onnx_precision, tuple(net), (), clear)
    if onnx_precision == "fp16":
        notes: tuple[str, ...] = ()
        if has_strongly_typed:
            net.append("STRONGLY_TYPED")
            return BuildPlan("fp16", tuple(net), (), (), notes)
        # TensorRT without strong typing: fp16 I/O needs the FP16 flag to build
        return BuildPlan("fp16", tuple(net), ("FP16",), (),
                         ("this TensorRT has no strongly typed networks; fp16 layers may be re-typed",))
    if fp16:
        return BuildPlan("fp16", tuple(net), ("FP16",), ("TF32",),
                         ("--fp16 on an fp32 ONNX: TensorRT chooses per-layer precision (LayerNorm may run in "
                          "fp16); an fp16 export (`span-deploy export --fp16`) keeps the sensitive ops in fp32",))
    return BuildPlan("fp32", tuple(net), (), ("TF32",))


def build_engine(onnx_path: str | Path, out_path: str | Path, profile: Profile, fp16: bool = False,
                 plugin_lib: str | Path | None = None, timing_cache: str | Path | None = None,
                 workspace_mb: int | None = None, log=print) -> Path:
    """Build and write ``out_path`` (atomically) and its ``.json`` sidecar. Needs TensorRT + a GPU."""
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise BackendError(f"ONNX model not found: {onnx_path}")
    meta = read_metadata(onnx_path)
    has_st = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    plan = plan_build(trt.__version__, meta.get("precision", "fp32"), fp16, has_st)
    for note in plan.notes:
        log(f"note: {note}")

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    if meta.get("attention") == "plugin":
        load_plugin_library(trt, builder.get_plugin_registry(), plugin_lib)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"{onnx_path}: TensorRT could not parse the ONNX: {errs}")
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.clear_flags:
        if hasattr(trt.BuilderFlag, name):
            config.clear_flag(getattr(trt.BuilderFlag, name))
    opt = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in profile.shapes:
            raise BackendError(f"the profile has no shapes for network input {name!r}")
        opt.set_shape(name, *profile.shapes[name])
    config.add_optimization_profile(opt)
    cache_path = Path(timing_cache) if timing_cache else None
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    data = bytes(serialized)
    if cache_path is not None:
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    out_path = Path(out_path)
    atomic_write_bytes(out_path, data)
    doc = sidecar_doc(meta, profile, plan, trt.__version__, data)
    atomic_write_bytes(sidecar_path(out_path), json.dumps(doc, indent=1).encode())
    return out_path
