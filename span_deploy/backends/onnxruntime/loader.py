"""An exported SPAN ONNX -> an ONNX Runtime session (CPU or CUDA EP), metadata checked first."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...config import SpanConfig
from ...errors import BackendError
from ...metadata import check_rulebook_version, config_from_metadata, read_metadata
from ...native import ort_ops_library


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
    session: object            # onnxruntime.InferenceSession

    @property
    def attention(self) -> str:
        return self.meta["attention"]

    @property
    def precision(self) -> str:
        return self.meta.get("precision", "fp32")


def session_options(threads: int | None, custom_ops: bool):
    ort = import_onnxruntime()

    so = ort.SessionOptions()
    # ORT's defaults, by measurement (bench/ort_session_options.py, 20k/12k/20k-patch slides in one
    # session, 2 threads): the memory pattern changes nothing here (each slide has new shapes);
    # without the arena peak RSS drops 830 -> 641 MB but the forwards take 1.39x as long.
    if threads:
        so.intra_op_num_threads = int(threads)
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
                    expect_attention: str | None = None) -> OrtModel:
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
    so = session_options(threads, custom_ops=attention == "plugin")
    try:
        session = ort.InferenceSession(str(path), so, providers=providers(device))
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        raise BackendError(f"{path}: ONNX Runtime could not load the model: {e}") from None
    return OrtModel(path, meta, cfg, session)
