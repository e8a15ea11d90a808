"""Write a Triton model repository for an exported SPAN model (and optionally its patch encoder).

``REPO/span_features/{config.pbtxt, 1/model.onnx, 1/model.py}``, and with an encoder
``REPO/patch_encoder/...`` and ``REPO/span_slide/...``. Each ``model.py`` is a bootstrap (see
``BOOTSTRAP``) importing the model class from ``span_deploy.serving.triton.models``.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from ...metadata import read_metadata

KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
TILE = 224

BOOTSTRAP = '''"""Triton Python-backend model written by `span-deploy triton export`: {module}."""
import os
import site
import sys

# The backend stub ignores PYTHONPATH: `span-deploy triton serve` passes the serving interpreter's
# site-packages in SPAN_DEPLOY_SITE; put them first (site.addsitedir also runs their .pth files).
for _d in reversed([d for d in os.environ.get("SPAN_DEPLOY_SITE", "").split(os.pathsep) if d]):
    _before = list(sys.path)
    site.addsitedir(_d)
    _front = [_d] + [p for p in sys.path if p not in _before and p != _d]
    sys.path[:] = _front + [p for p in _before if p not in _front]

from span_deploy.serving.triton.models.{module} import TritonPythonModel  # noqa: E402,F401
'''


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str          # TYPE_FP32, ...
    dims: tuple[int, ...]


def _tensors(tensors: list[Tensor]) -> str:
    return ",\n".join(f'  {{\n    name: "{t.name}"\n    data_type: {t.dtype}\n    dims: [ {", ".join(map(str, t.dims))} ]\n  }}'
                      for t in tensors)


def config_text(name: str, backend: str, inputs: list[Tensor], outputs: list[Tensor], max_batch_size: int = 0,
                instances: int = 1, kind: str = "KIND_CPU", parameters: dict[str, str] | None = None,
                dynamic_batching: str | None = None) -> str:
    """A config.pbtxt in Triton's model-config text format."""
    lines = [f'name: "{name}"', f'backend: "{backend}"', f"max_batch_size: {max_batch_size}",
             f"input [\n{_tensors(inputs)}\n]", f"output [\n{_tensors(outputs)}\n]",
             f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]"]
    if dynamic_batching is not None:
        lines.append(f"dynamic_batching {{\n{dynamic_batching}\n}}")
    for k, v in (parameters or {}).items():
        lines.append(f'parameters {{\n  key: "{k}"\n  value {{ string_value: "{v}" }}\n}}')
    return "\n".join(lines) + "\n"


def span_outputs(task: str, num_outputs: int) -> list[Tensor]:
    out = [Tensor("LOGITS", "TYPE_FP32", (num_outputs,)),
           Tensor("SLIDE_EMBEDDING", "TYPE_FP32", (-1,)),
           Tensor("PATCH_SCORES", "TYPE_FP32", (-1,))]
    if task == "segmentation":
        out += [Tensor("PATCH_PROBABILITIES", "TYPE_FP32", (-1,)), Tensor("PATCH_LOGITS", "TYPE_FP32", (-1,))]
    return out


def _version_dir(repo: Path, name: str, module: str, onnx: Path | None) -> Path:
    d = repo / name / "1"
    d.mkdir(parents=True, exist_ok=True)
    if onnx is not None:
        shutil.copy2(onnx, d / "model.onnx")
    (d / "model.py").write_text(BOOTSTRAP.format(module=module))
    return d


def _encoder_dim(encoder: Path) -> int:
    import onnx

    m = onnx.load(str(encoder), load_external_data=False)
    meta = {p.key: p.value for p in m.metadata_props}
    if str(meta.get("feature_dim", "")).isdigit():
        return int(meta["feature_dim"])
    d = m.graph.output[0].type.tensor_type.shape.dim[-1]
    if d.dim_value <= 0:
        raise ConfigError(f"{encoder}: cannot tell the encoder's feature dim; export it with "
                          "`python -m span_export.encoders.export`")
    return int(d.dim_value)


def renamed_encoder(src: Path, dst: Path) -> None:
    """A copy of the encoder ONNX whose input is TILES and output FEATURES (Triton's onnxruntime
    backend serves a model's own tensor names)."""
    import onnx

    m = onnx.load(str(src))
    if len(m.graph.input) != 1 or len(m.graph.output) != 1:
        raise ConfigError(f"{src}: an encoder has one input and one output")
    ren = {m.graph.input[0].name: "TILES", m.graph.output[0].name: "FEATURES"}
    for vi in (*m.graph.input, *m.graph.output, *m.graph.value_info):
        vi.name = ren.get(vi.name, vi.name)
    for node in m.graph.node:
        node.input[:] = [ren.get(n, n) for n in node.input]
        node.output[:] = [ren.get(n, n) for n in node.output]
    onnx.save(m, str(dst))


def pick_encoder_backend(choice: str) -> str:
    """auto: Triton's onnxruntime backend when the installed server ships it, else the Python one."""
    if choice != "auto":
        return choice
    from .server import find_tritonserver

    t = find_tritonserver()
    return "onnxruntime" if t is not None and t.has_backend("onnxruntime") else "python"


def write_repository(model: str | Path, output: str | Path, encoder: str | Path | None = None,
                     instances: int = 1, kind: str = "cpu", threads: int = 0, encoder_batch: int = 64,
                     encoder_instances: int | None = None, overwrite: bool = False,
                     encoder_backend: str = "auto") -> list[Path]:
    """Write the repository; returns the config.pbtxt paths written.

    ``encoder_backend``: python (ONNX Runtime inside the Python backend), onnxruntime (Triton's
    own backend; the ONNX is copied with its tensors renamed TILES / FEATURES) or auto.
    """
    if encoder_backend not in ("auto", "python", "onnxruntime"):
        raise ConfigError(f"unknown encoder backend {encoder_backend!r}; use auto, python or onnxruntime")
    model, output = Path(model), Path(output)
    if not model.is_file():
        raise ConfigError(f"model file not found: {model}")
    if kind not in KINDS:
        raise ConfigError(f"unknown instance kind {kind!r}; use cpu or gpu")
    if instances < 1 or encoder_batch < 1:
        raise ConfigError("--instances and --encoder-batch must be >= 1")
    if encoder is not None and not Path(encoder).is_file():
        raise ConfigError(f"encoder file not found: {encoder}")
    meta = read_metadata(model)
    from ...config import SpanConfig

    scfg = SpanConfig.from_dict(meta["config"])
    task, feat_dim = scfg.task, int(scfg.feat_dim)
    num_outputs = -1 if task == "segmentation" else int(scfg.num_outputs)   # segmentation: empty
    if encoder is not None:
        edim = _encoder_dim(Path(encoder))
        if edim != feat_dim:
            raise ConfigError(f"the encoder gives {edim}-d features but the SPAN model expects {feat_dim}-d")
    names = ["span_features"] + (["patch_encoder", "span_slide"] if encoder else [])
    for n in names:
        if (output / n).exists():
            if not overwrite:
                raise ConfigError(f"{output / n} exists; pass --overwrite to replace it")
            shutil.rmtree(output / n)
    output.mkdir(parents=True, exist_ok=True)
    k = KINDS[kind]
    outs = span_outputs(task, num_outputs)
    params = {"model_file": "model.onnx", "threads": str(threads), "task": task}
    written = []

    _version_dir(output, "span_features", "span_features", model)
    (output / "span_features" / "config.pbtxt").write_text(config_text(
        "span_features", "python",
        [Tensor("FEATURES", "TYPE_FP32", (-1, feat_dim)), Tensor("COORDS", "TYPE_INT64", (-1, 2))],
        outs, 0, instances, k, params))
    written.append(output / "span_features" / "config.pbtxt")
    if encoder:
        encoder = Path(encoder)
        eb = pick_encoder_backend(encoder_backend)
        if eb == "onnxruntime":
            (output / "patch_encoder" / "1").mkdir(parents=True)
            renamed_encoder(encoder, output / "patch_encoder" / "1" / "model.onnx")
            eparams = {"intra_op_thread_count": str(threads)} if threads else {}
        else:
            _version_dir(output, "patch_encoder", "patch_encoder", encoder)
            eparams = {"model_file": "model.onnx", "threads": str(threads)}
        (output / "patch_encoder" / "config.pbtxt").write_text(config_text(
            "patch_encoder", eb, [Tensor("TILES", "TYPE_UINT8", (TILE, TILE, 3))],
            [Tensor("FEATURES", "TYPE_FP32", (feat_dim,))], encoder_batch, encoder_instances or instances, k,
            eparams, dynamic_batching="  max_queue_delay_microseconds: 2000"))
        _version_dir(output, "span_slide", "span_slide", None)
        (output / "span_slide" / "config.pbtxt").write_text(config_text(
            "span_slide", "python",
            [Tensor("TILES", "TYPE_UINT8", (-1, TILE, TILE, 3)), Tensor("COORDS", "TYPE_INT64", (-1, 2))],
            outs, 0, instances, "KIND_CPU",
            {"encoder_model": "patch_encoder", "features_model": "span_features",
             "encoder_chunk": str(encoder_batch), "encoder_inflight": str(max(2, encoder_instances or instances))}))
        written += [output / "patch_encoder" / "config.pbtxt", output / "span_slide" / "config.pbtxt"]
    return written


def parse_config(path: str | Path):
    """Parse a config.pbtxt with Triton's own model-config schema (tritonclient's protobuf)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(Path(path).read_text(), model_config_pb2.ModelConfig())
