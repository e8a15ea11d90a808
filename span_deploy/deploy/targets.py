"""Deploy targets: one YAML per kind of machine (as mmdeploy's deploy configs), naming everything an
export and an engine build decide -- backend, attention implementation, precision, opset, the token
range of the TensorRT profile, workspace, timing cache, CUDA architecture.

The shipped targets live in the repository's ``export/targets/``; ``$SPAN_DEPLOY_TARGETS`` (folders,
``os.pathsep``-separated) is searched first, and ``--target`` also takes a path to a YAML file. A
model directory embeds its target in ``deploy.json``, so it stays self-describing when copied to a
machine without the YAMLs (a Jetson).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError

_REPO_TARGETS = Path(__file__).resolve().parents[2] / "export" / "targets"
BACKENDS = ("ort", "trt")
ATTENTIONS = ("plugin", "portable")
PRECISIONS = ("fp32", "fp16")
TOP_KEYS = {"name", "description", "backend", "onnx", "tensorrt"}
ONNX_KEYS = {"attention", "precision", "opset"}
TRT_KEYS = {"precision", "tokens", "workspace_mb", "timing_cache", "cuda_arch"}


@dataclass(frozen=True)
class TensorRTSettings:
    precision: str
    min_tokens: int
    opt_tokens: int
    max_tokens: int
    workspace_mb: int | None = None
    timing_cache: str | None = None     # file name inside the model directory
    cuda_arch: str | None = None        # what tools/build_native.sh --cuda-arch should build


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    backend: str                        # what `predict --model DIR` opens: ort or trt
    attention: str
    precision: str                      # of the ONNX export
    opset: int
    tensorrt: TensorRTSettings | None = field(default=None)

    def to_dict(self) -> dict:
        """The YAML's shape, as embedded in deploy.json (``from_dict`` reads it back)."""
        doc = {"name": self.name, "description": self.description, "backend": self.backend,
               "onnx": {"attention": self.attention, "precision": self.precision, "opset": self.opset}}
        if self.tensorrt is not None:
            t = asdict(self.tensorrt)
            doc["tensorrt"] = {"precision": t["precision"],
                               "tokens": {"min": t["min_tokens"], "opt": t["opt_tokens"], "max": t["max_tokens"]},
                               **{k: t[k] for k in ("workspace_mb", "timing_cache", "cuda_arch") if t[k] is not None}}
        return doc

    @classmethod
    def from_dict(cls, doc: object, where: str | Path) -> "Target":
        """Validate a target document; every problem is one ConfigError naming ``where``."""
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"{where}: {msg}")

        if not isinstance(doc, dict):
            raise bad("a deploy target is a YAML mapping (name, backend, onnx, tensorrt)")
        unknown = set(doc) - TOP_KEYS
        if unknown:
            raise bad(f"unknown key(s) {sorted(unknown)}; a target has {sorted(TOP_KEYS)}")
        name, backend = doc.get("name"), doc.get("backend")
        if not isinstance(name, str) or not name:
            raise bad("'name' must be a non-empty string")
        if backend not in BACKENDS:
            raise bad(f"'backend' must be one of {', '.join(BACKENDS)}, not {backend!r}")
        onnx = doc.get("onnx")
        if not isinstance(onnx, dict) or set(onnx) - ONNX_KEYS:
            raise bad(f"'onnx' must be a mapping with keys from {sorted(ONNX_KEYS)}")
        attention = onnx.get("attention", "plugin")
        precision = onnx.get("precision", "fp32")
        opset = onnx.get("opset", 17)
        if attention not in ATTENTIONS:
            raise bad(f"onnx.attention must be plugin or portable, not {attention!r}")
        if precision not in PRECISIONS:
            raise bad(f"onnx.precision must be fp32 or fp16, not {precision!r}")
        if not isinstance(opset, int) or isinstance(opset, bool) or not 14 <= opset <= 23:
            raise bad(f"onnx.opset must be an integer in 14..23, not {opset!r}")
        if backend == "ort" and precision == "fp16":
            raise bad("an ort target runs fp32 (ONNX Runtime's CPU kernels have no fp16 attention); "
                      "use precision fp32")
        trt = doc.get("tensorrt")
        settings = None
        if backend == "trt":
            if not isinstance(trt, dict):
                raise bad("a trt target needs a 'tensorrt' mapping (precision, tokens, ...)")
            settings = _trt_settings(trt, precision, bad)
        elif trt is not None:
            raise bad("'tensorrt' settings belong to a trt target; this one has backend ort")
        description = doc.get("description", "")
        if not isinstance(description, str):
            raise bad("'description' must be a string")
        return cls(name, description, backend, attention, precision, opset, settings)


def _trt_settings(trt: dict, onnx_precision: str, bad) -> TensorRTSettings:
    unknown = set(trt) - TRT_KEYS
    if unknown:
        raise bad(f"unknown tensorrt key(s) {sorted(unknown)}; allowed: {sorted(TRT_KEYS)}")
    precision = trt.get("precision", onnx_precision)
    if precision not in PRECISIONS:
        raise bad(f"tensorrt.precision must be fp32 or fp16, not {precision!r}")
    if precision != onnx_precision:
        # TensorRT >= 11 builds strongly typed networks only: the engine runs in the ONNX's types.
        raise bad(f"tensorrt.precision {precision} differs from onnx.precision {onnx_precision}; TensorRT 11 "
                  "runs an engine in its ONNX's types, so export at the engine's precision")
    tokens = trt.get("tokens")
    if not isinstance(tokens, dict) or set(tokens) != {"min", "opt", "max"} or \
            not all(isinstance(v, int) and not isinstance(v, bool) for v in tokens.values()):
        raise bad("tensorrt.tokens must be {min: N, opt: N, max: N} (patches per slide, integers)")
    if not 1 <= tokens["min"] <= tokens["opt"] <= tokens["max"]:
        raise bad(f"tensorrt.tokens must satisfy 1 <= min <= opt <= max, got {tokens}")
    ws = trt.get("workspace_mb")
    if ws is not None and (not isinstance(ws, int) or isinstance(ws, bool) or ws < 1):
        raise bad(f"tensorrt.workspace_mb must be a positive integer (MiB), not {ws!r}")
    cache = trt.get("timing_cache")
    if cache is not None and (not isinstance(cache, str) or not cache or Path(cache).name != cache):
        raise bad(f"tensorrt.timing_cache must be a plain file name (kept in the model directory), not {cache!r}")
    arch = trt.get("cuda_arch")
    if arch is not None:
        arch = str(arch)
        if not all(a.isdigit() for a in arch.split(";")):
            raise bad(f"tensorrt.cuda_arch must be CUDA architectures like \"87\" or \"80;90\", not {arch!r}")
    return TensorRTSettings(precision, tokens["min"], tokens["opt"], tokens["max"], ws, cache, arch)


def search_dirs() -> list[Path]:
    env = [Path(p) for p in os.environ.get("SPAN_DEPLOY_TARGETS", "").split(os.pathsep) if p]
    return env + [_REPO_TARGETS]


def available_targets() -> dict[str, Path]:
    """Target name -> YAML file; earlier search folders win."""
    found: dict[str, Path] = {}
    for d in search_dirs():
        if d.is_dir():
            for f in sorted(d.glob("*.yaml")):
                found.setdefault(f.stem, f)
    return found


def load_target(name_or_path: str | Path) -> Target:
    """A target by name (export/targets/NAME.yaml, or $SPAN_DEPLOY_TARGETS) or by YAML path."""
    import yaml

    p = Path(name_or_path)
    if p.suffix.lower() in (".yaml", ".yml") or p.is_file():
        path = p
        if not path.is_file():
            raise ConfigError(f"deploy target file not found: {path}")
    else:
        known = available_targets()
        if str(name_or_path) not in known:
            names = ", ".join(known) or "none found"
            raise ConfigError(f"unknown deploy target {str(name_or_path)!r} (known: {names}; looked in "
                              f"{', '.join(str(d) for d in search_dirs())}); or pass a target YAML's path")
        path = known[str(name_or_path)]
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: not a readable YAML deploy target ({type(e).__name__})") from None
    target = Target.from_dict(doc, path)
    if path.stem != target.name and p.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"{path}: its name is {target.name!r} but the file is {path.name}; make them agree")
    return target
