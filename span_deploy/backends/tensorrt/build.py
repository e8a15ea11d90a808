"""ONNX -> serialized TensorRT engine (+ a JSON sidecar with the span-deploy metadata).

The build runs through polygraphy's TensorRT loaders (``NetworkFromOnnxPath`` -> ``CreateConfig``
-> ``EngineBytesFromNetwork``). Every decision -- network flags, builder flags, precision, profile
shapes, the loaders' arguments -- is made by pure functions tested without TensorRT
(``plan_build``, ``polygraphy_build_args``, ``engine_loader``: polygraphy imports TensorRT only
when a loader is called); ``build_engine`` only calls them.

Plugins: our library exports only ``getCreators`` (see plugins/sparse_window_attention), so it is
loaded with ``IPluginRegistry.load_library`` (``plugin.load_plugin_library``), not polygraphy's
``LoadPlugins``, which only ``dlopen``s a library and so registers nothing from it. It is not
serialised into the engine: TensorRT serialises plugin libraries only into version-compatible
engines (``IBuilderConfig::setPluginsToSerialize``), and polygraphy 0.53's ``CreateConfig`` has no
argument for it; the runner loads the library (``--plugin-lib`` or the built one) as before.

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
from .profiles import Profile, onnx_input_shapes
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


# BuildPlan flag names -> what polygraphy does with them. EXPLICIT_BATCH (TensorRT < 10) needs no
# argument: polygraphy's CreateNetwork sets it by itself there, and TensorRT >= 10 has no such flag.
NETWORK_FLAGS = {"STRONGLY_TYPED", "EXPLICIT_BATCH"}
BUILDER_FLAGS = {"FP16"}       # CreateConfig(fp16=True)
CLEAR_FLAGS = {"TF32"}         # CreateConfig(tf32=False) clears it; tf32=True sets it (TensorRT's default)


def polygraphy_build_args(plan: BuildPlan, profile: Profile, graph_inputs: list[str],
                          workspace_mb: int | None = None, timing_cache: str | Path | None = None) -> dict:
    """The polygraphy loader arguments for one build (pure: no TensorRT, no polygraphy).

    ``graph_inputs``: the ONNX graph's input names; the profile must cover each (polygraphy would
    otherwise fill a missing one with a static default shape) and gives only those (polygraphy
    refuses a profile naming an input the network lacks). Memory pools are keyed by
    ``trt.MemoryPoolType`` member name.
    """
    for kind, names, known in (("network", plan.network_flags, NETWORK_FLAGS),
                               ("builder", plan.builder_flags, BUILDER_FLAGS),
                               ("cleared builder", plan.clear_flags, CLEAR_FLAGS)):
        unknown = sorted(set(names) - known)
        if unknown:
            raise BackendError(f"no polygraphy argument for the {kind} flag(s) {unknown}")
    missing = [n for n in graph_inputs if n not in profile.shapes]
    if missing:
        raise BackendError(f"the profile has no shapes for network input(s) {missing}")
    cache = str(timing_cache) if timing_cache else None
    return {
        "network": {"strongly_typed": "STRONGLY_TYPED" in plan.network_flags},
        "config": {"tf32": "TF32" not in plan.clear_flags, "fp16": "FP16" in plan.builder_flags,
                   "load_timing_cache": cache},
        "memory_pool_limits": {"WORKSPACE": int(workspace_mb) << 20} if workspace_mb else {},
        "profile": {n: tuple(tuple(int(d) for d in s) for s in profile.shapes[n]) for n in graph_inputs},
        "save_timing_cache": cache,
    }


def engine_loader(onnx_path: str | Path, args: dict, pool_type=None):
    """polygraphy's loader chain for ``args`` (from ``polygraphy_build_args``); calling it builds the
    engine bytes. Constructing it imports no TensorRT. ``pool_type`` maps a memory-pool name to
    its ``trt.MemoryPoolType`` (needed only when ``args`` sets a pool limit)."""
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath
    from polygraphy.backend.trt import Profile as PolygraphyProfile

    prof = PolygraphyProfile()
    for name, (lo, opt, hi) in args["profile"].items():
        prof.add(name, min=lo, opt=opt, max=hi)
    pools = args["memory_pool_limits"]
    if pools and pool_type is None:
        raise BackendError("a memory pool limit needs pool_type (the trt.MemoryPoolType lookup)")
    config = CreateConfig(profiles=[prof], memory_pool_limits={pool_type(k): v for k, v in pools.items()} or None,
                          **args["config"])
    network = NetworkFromOnnxPath(str(onnx_path), **args["network"])
    return EngineBytesFromNetwork(network, config=config, save_timing_cache=args["save_timing_cache"])


def build_engine(onnx_path: str | Path, out_path: str | Path, profile: Profile, fp16: bool = False,
                 plugin_lib: str | Path | None = None, timing_cache: str | Path | None = None,
                 workspace_mb: int | None = None, log=print) -> Path:
    """Build and write ``out_path`` (atomically) and its ``.json`` sidecar. Needs TensorRT + a GPU."""
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise BackendError(f"ONNX model not found: {onnx_path}")
    meta = read_metadata(onnx_path)
    has_st = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    plan = plan_build(trt.__version__, meta.get("precision", "fp32"), fp16, has_st)
    for note in plan.notes:
        log(f"note: {note}")
    args = polygraphy_build_args(plan, profile, list(onnx_input_shapes(onnx_path)), workspace_mb, timing_cache)
    if meta.get("attention") == "plugin":
        load_plugin_library(trt, trt.get_plugin_registry(), plugin_lib)
    try:
        with G_LOGGER.verbosity(G_LOGGER.WARNING):     # TensorRT's warnings and errors, not polygraphy's info
            loader = engine_loader(onnx_path, args, pool_type=lambda name: getattr(trt.MemoryPoolType, name))
            data = bytes(loader())
    except PolygraphyException as e:
        msg = " ".join(str(e).split())[:500] or "see the log above"
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path}: {msg}") from None
    out_path = Path(out_path)
    atomic_write_bytes(out_path, data)
    doc = sidecar_doc(meta, profile, plan, trt.__version__, data)
    atomic_write_bytes(sidecar_path(out_path), json.dumps(doc, indent=1).encode())
    return out_path
