"""int8 SPAN exports for CPUs, with ONNX Runtime's quantisation tools (no torch).

Only the Gemm / MatMul weights are quantised (int8, per output channel): they are ~80% of SPAN's
compute on a CPU. Weights use the 7-bit range (``reduce_range``): without VNNI, x86's u8 x s8 dot
products add pairs into a saturating int16, which moved the default model's embedding to cosine
0.96 on an AVX2 CPU (0.9998 with the reduced range; on VNNI CPUs it costs one bit of weight
precision). Products of two activations (the global relay's scores and row sums), the global
tokens' and the head's one-row Gemms, LayerNorm,
softmax, the window attention (custom op or its portable ops) and the heads' last Linear stay
fp32. Two modes:

* dynamic (default): activation scales are computed per call at run time (DynamicQuantizeLinear +
  MatMulInteger) -- what ONNX Runtime recommends for transformers; nothing to calibrate.
* static: activation scales fixed from a calibration set -- a folder of feature h5 files of the
  model's own encoder -- in QDQ form (ONNX Runtime fuses it into QLinear kernels).

The export's metadata says ``precision: int8`` and how it was made, so every runtime knows what it
runs (TensorRT refuses it: build engines from the fp32 / fp16 export).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .metadata import METADATA_KEY, config_from_metadata, read_metadata

QUANTISED_OPS = ["MatMul", "Gemm"]


def slide_level_products(model_path: str | Path, meta: dict) -> list[str]:
    """MatMul / Gemm nodes whose rows do not grow with the slide: the global tokens' projections
    and FFN, the head. Found by running the fp32 graph on two synthetic slides of different size
    and comparing each node's input rows. They are left fp32: int8 saves nothing on one row, and
    a calibrated scale of one token's activations clips on other slides (the embedding, which
    sums the stages' global tokens, moved to cosine 0.85 on the default model)."""
    import onnx

    from .backends.onnxruntime.loader import session_options
    from .bench.tissue_tokens import tissue_slide
    from .backends.onnxruntime.loader import import_onnxruntime
    from .rulebook import build_rulebook

    ort = import_onnxruntime()
    m = onnx.load(str(model_path))
    nodes = [n for n in m.graph.node if n.op_type in QUANTISED_OPS]
    graph_in = {i.name for i in m.graph.input}
    outs = {o.name for o in m.graph.output}
    probe = sorted({n.input[0] for n in nodes} - graph_in - outs)
    m.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in probe)
    sess = ort.InferenceSession(m.SerializeToString(), session_options(None, meta["attention"] == "plugin"),
                                providers=["CPUExecutionProvider"])
    cfg = config_from_metadata(meta, model_path)
    rows = []
    for n_patches in (240, 480):
        coords, feats = tissue_slide(n_patches, seed=n_patches, feat_dim=cfg.feat_dim)
        feed = build_rulebook(coords, cfg).engine_inputs(cfg, feats)
        got = sess.run(probe, {i.name: feed[i.name] for i in sess.get_inputs()})
        rows.append({name: a.shape[0] if a.ndim else 1 for name, a in zip(probe, got)})
    return [n.name for n in nodes if n.input[0] in rows[0] and rows[0][n.input[0]] == rows[1][n.input[0]]]


def _kept_fp32(model_path: Path, meta: dict) -> list[str]:
    return activation_products(model_path) + slide_level_products(model_path, meta)


def activation_products(model_path: str | Path) -> list[str]:
    """MatMul / Gemm nodes that multiply two activations (no initializer among their two inputs):
    the relay's scores and weighted row sums. They are left fp32: their operands are softmax
    weights of ~1/N and scores a softmax over N rows amplifies, which int8 would flatten."""
    import onnx

    g = onnx.load(str(model_path), load_external_data=False).graph
    consts = {i.name for i in g.initializer}
    consts |= {o for n in g.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in g.node if n.op_type in QUANTISED_OPS and not any(i in consts for i in n.input[:2])]


def quantize_int8(src: str | Path, dst: str | Path, calibration: str | Path | None = None,
                  max_calibration_slides: int = 32) -> Path:
    """Write ``dst``: ``src`` (an fp32 span-deploy export) with int8 weights. ``calibration``: a
    folder of feature h5 files for static activation scales; None -> dynamic."""
    import onnx

    src, dst = Path(src), Path(dst)
    meta = read_metadata(src)
    if meta.get("precision", "fp32") != "fp32":
        raise ConfigError(f"{src}: int8 quantisation starts from an fp32 export, this one is {meta.get('precision')}")
    # The quantiser cannot infer types through the custom op; the graph is fp32 everywhere else.
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    try:
        _quantize(src, dst, meta, calibration, max_calibration_slides, extra)
    except (ValueError, RuntimeError) as e:   # ONNX Runtime's quantiser: one line, not its traceback
        raise ConfigError(f"{src}: ONNX Runtime could not quantise it ({type(e).__name__}: {str(e)[:200]}); "
                          "use the fp32 export, or --int8 without --calibration") from None
    return dst


def _quantize(src: Path, dst: Path, meta: dict, calibration, max_calibration_slides: int, extra: dict) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .outputs.atomic import atomic_path

    with atomic_path(dst) as tmp:
        if calibration is None:
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=QUANTISED_OPS,
                             per_channel=True, reduce_range=True, nodes_to_exclude=_kept_fp32(src, meta),
                             extra_options=extra)
            how = {"mode": "dynamic", "weights": "int8 per channel", "activations": "int8, scales per call"}
        else:
            files = calibration_files(calibration, max_calibration_slides)
            _quantize_static(src, tmp, meta, files, extra)
            how = {"mode": "static", "weights": "int8 per channel", "activations": "int8, calibrated (MinMax)",
                   "calibration_slides": len(files)}
        _set_metadata(tmp, {**meta, "precision": "int8", "quantization": how})


def calibration_files(folder: str | Path, limit: int) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"calibration folder not found: {folder} (a folder of feature .h5 files)")
    files = sorted(folder.glob("*.h5"))[:limit]
    if not files:
        raise ConfigError(f"{folder}: no .h5 feature files to calibrate on")
    return files


class _SlideReader:
    """onnxruntime CalibrationDataReader: the engine inputs of each calibration slide."""

    def __init__(self, files: list[Path], meta: dict, where: Path):
        from .features import read_features
        from .rulebook import build_rulebook

        self.cfg = config_from_metadata(meta, where)
        self._files = iter(files)
        self._read, self._build = read_features, build_rulebook

    def get_next(self) -> dict[str, np.ndarray] | None:
        f = next(self._files, None)
        if f is None:
            return None
        sf = self._read(f, feat_dim=self.cfg.feat_dim)
        return self._build(sf.coords, self.cfg).engine_inputs(self.cfg, sf.feats)


def _quantize_static(src: Path, dst: Path, meta: dict, files: list[Path], extra: dict) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = _SlideReader(files, meta, src)
    kept = _kept_fp32(src, meta)   # before the calibration context patches session creation
    with tempfile.TemporaryDirectory() as d, _calibration_sessions_with_custom_ops(meta["attention"] == "plugin"):
        # The calibrator writes an augmented copy of the model next to its input: work on a copy.
        model = Path(d) / "model.onnx"
        shutil.copyfile(src, model)
        quantize_static(str(model), str(dst), reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=QUANTISED_OPS,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        reduce_range=True, nodes_to_exclude=kept,
                        calibrate_method=CalibrationMethod.MinMax,
                        # fp32 biases: the window-attention outputs feeding them have no calibrated
                        # scale of their own to derive an int32 bias scale from
                        extra_options={**extra, "QuantizeBias": False})


@contextlib.contextmanager
def _calibration_sessions_with_custom_ops(needed: bool) -> Iterator[None]:
    """ONNX Runtime's calibrator makes its own InferenceSession and offers no hook for a custom-op
    library; for a plugin export, register ours on the sessions it creates while it calibrates."""
    if not needed:
        yield
        return
    import onnxruntime
    from onnxruntime.quantization import calibrate

    from .native import ort_ops_library

    lib = str(ort_ops_library())
    original = calibrate.onnxruntime.InferenceSession

    def session(path, sess_options=None, **kw):
        so = sess_options or onnxruntime.SessionOptions()
        so.register_custom_ops_library(lib)
        return original(path, sess_options=so, **kw)

    calibrate.onnxruntime.InferenceSession = session
    try:
        yield
    finally:
        calibrate.onnxruntime.InferenceSession = original


def _set_metadata(path: Path, meta: dict) -> None:
    import onnx

    m = onnx.load(str(path))
    props = {p.key: p.value for p in m.metadata_props}
    props[METADATA_KEY] = json.dumps(meta)
    del m.metadata_props[:]
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))
    os.chmod(path, 0o644)
