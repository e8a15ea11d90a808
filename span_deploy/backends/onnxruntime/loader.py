"""An exported SPAN ONNX -> an ONNX Runtime session (CPU or CUDA EP), metadata checked first."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...config import SpanConfig
from ...errors import BackendError
from ...metadata import check_rulebook_version, config_from_metadata, read_metadata
from ...native import ort_ops_library
from .body import SplitBody
from .heap import return_freed_heap


ORT_MISSING = ("ONNX Runtime is not installed: pip install 'span-deploy[cpu]' (onnxruntime) or 'span-deploy[gpu]' "
               "(onnxruntime-gpu); on a Jetson, NVIDIA's onnxruntime-gpu wheel for your JetPack")


def import_onnxruntime():
    """onnxruntime, or one clear line: the runtime leaves the choice of ORT build to the install
    (the CPU wheel, onnxruntime-gpu, or the Jetson build -- they share one module name)."""
    try:
        import onnxruntime  # noqa: PLC0415
    except ImportError:
        raise BackendError(ORT_MISSING) from None
    return onnxruntime


def backend_name(attention: str) -> str:
    return "ort" if attention == "plugin" else "ort-portable"


@dataclass
class OrtModel:
    path: Path
    meta: dict
    cfg: SpanConfig
    session: object            # onnxruntime.InferenceSession (the body when the stem is split off)
    stem: object | None = None  # the stem's session (stem.py), or None: the session is the whole graph

    @property
    def attention(self) -> str:
        return self.meta["attention"]

    @property
    def precision(self) -> str:
        return self.meta.get("precision", "fp32")


def session_options(threads: int | None, custom_ops: bool, single_slide: bool = False):
    """``single_slide``: the session runs one slide and is closed (predict): no CPU arena."""
    ort = import_onnxruntime()

    so = ort.SessionOptions()
    # By measurement (bench/ort_session_options.py, bench/predict_scaling.py, 2 threads): the memory
    # pattern changes nothing (each slide has new shapes). The CPU arena pays in a session that
    # runs many slides (its chunks are reused: without it 20k/12k/20k-patch slides took 1.39x as
    # long), but not for one slide: it splits memory into power-of-two regions that a later,
    # larger tensor cannot reuse, so the peak grows and every new page is a page fault. One
    # 200k-patch forward without it: peak RSS 3.50 -> 2.94 GB and 0.84x the time.
    if threads:
        so.intra_op_num_threads = int(threads)
    if single_slide:
        so.enable_cpu_mem_arena = False
    if custom_ops:
        so.register_custom_ops_library(str(ort_ops_library()))
    return so


def providers(device: str) -> list[str]:
    ort = import_onnxruntime()

    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendError("device cuda asked for, but this onnxruntime has no CUDA execution provider "
                               "(pip install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_model_file(model: str | Path, device: str = "cpu", threads: int | None = None,
                    expect_attention: str | None = None, single_slide: bool = False) -> OrtModel:
    """Read the metadata (refusing another rulebook version or the other attention variant), then
    create the session; the plugin variant registers the span-deploy custom-op library."""
    ort = import_onnxruntime()

    path = Path(model)
    if not path.is_file():
        raise BackendError(f"model file not found: {path}")
    meta = read_metadata(path)
    check_rulebook_version(meta, path)
    cfg = config_from_metadata(meta, path)
    attention = meta["attention"]
    if expect_attention and attention != expect_attention:
        raise BackendError(f"{path} is a {attention} export; use --backend {backend_name(attention)}")
    so = session_options(threads, custom_ops=attention == "plugin", single_slide=single_slide)
    # one slide on the CPU: the row-wise stem apart, so the features can stream through it
    split = _stem_split(path) if single_slide and device == "cpu" else None
    try:
        if split is None:
            return OrtModel(path, meta, cfg, ort.InferenceSession(str(path), so, providers=providers(device)))
        stem = ort.InferenceSession(split.stem, session_options(threads, False, single_slide), providers=providers(device))
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        raise BackendError(f"{path}: ONNX Runtime could not load the model: {e}") from None

    def make_session(model: bytes, chunked: bool = False):
        # a row pass runs the same chunk shapes over and over: there the arena's reuse pays
        opts = session_options(threads, attention == "plugin", single_slide and not chunked)
        try:
            return ort.InferenceSession(model, opts, providers=providers(device))
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"{path}: ONNX Runtime could not load the model: {e}") from None

    # the body's session(s) are made when the slide's size is known (body.py)
    body = SplitBody(split.body, split.body_inputs, split.body_outputs, split.output, cfg, make_session,
                     str(ort_ops_library()) if attention == "plugin" else None, single_slide)
    del split
    return_freed_heap()
    return OrtModel(path, meta, cfg, body, stem)


def _stem_split(path: Path):
    """The model's stem split (stem.py), or None (not splittable, or not a readable ONNX file:
    then the whole-graph session says what is wrong)."""
    import onnx

    from .stem import split_stem

    try:
        return split_stem(onnx.load(str(path)))
    except Exception:  # noqa: BLE001 - e.g. a damaged file: the ORT session reports it
        return None
