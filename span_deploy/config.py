"""The official SPAN config (Hydra/OmegaConf YAML) -> a typed, validated config.

Defaults for keys a YAML leaves out are the ones the official builder applies with
``cfg.model.get(key, default)`` (they differ from ``model/span.yaml`` for some keys:
share_qkv True, edge_mode none, conv_norm_position post, input_projection.bias True).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

FEATURE_DIMS = {"PLIP": 768, "V2": 1280, "CONCH": 512}  # any other name -> 1024
DATASET_CLASSES = {"C16": 2, "BRACS": 3, "BRACS7": 7, "TCGA-LUNG": 2, "TCGA": 2, "BRAC": 2}

TRANS_TYPES = ("long", "long_noshift", "swin")
CONV_TYPES = ("dwpatchconv", "patchconv", "patchmerge")
POS_EMBS = ("rpb", "alibi", "rope", "none")
GLOBAL_STRATEGIES = ("identity", "proj", "kernel")
EDGE_MODES = ("none", "count", "partial")
NORM_POSITIONS = ("pre", "post")
DCONV_TYPES = ("pixelshuffle", "patchinvs", "dwpatchinvs")    # the sparse decoder upsamplers
DCONV_ALIASES = {"s_pixelshuffle": "pixelshuffle", "s_patchinvs": "patchinvs", "s_dwpatchinvs": "dwpatchinvs"}
CONNECTIONS = ("concat", "add", "none")
CLS_AGGR = ("multi_addition", "concat", "mean", "last", "addition", "multiattn")
SURV_AGGR = ("multi_addition", "concat", "addition")
ACTIVATIONS = {"relu": "ReLU", "gelu": "GELU", "silu": "SiLU", "tanh": "Tanh", "leakyrelu": "LeakyReLU",
               "elu": "ELU", "sigmoid": "Sigmoid", "mish": "Mish", "identity": "Identity"}


def _yaml_loader() -> type:
    """A SafeLoader that reads floats as OmegaConf does (``1e-4`` is a float, not a string)."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


@dataclass(frozen=True)
class InputProjection:
    activation: str | None = None
    mlp_ratio: float = 0.5
    dropout: float = 0.0
    prenorm: bool = False
    bias: bool = True
    drop_first: bool = False


@dataclass(frozen=True)
class TokenSpec:
    """One global token: kind is max|mean|std|rand|fix|lrn; index numbers tokens of one stored kind."""
    kind: str
    index: int = 0


@dataclass(frozen=True)
class SpanConfig:
    """Everything the forward pass depends on, resolved as the official builder resolves it."""
    task: str                      # classification | survival
    feat_dim: int                  # F
    embed_dim: int                 # D at stage 0
    num_heads: int                 # H at stage 0
    encoder_string: str            # e.g. "111": transformer layers per stage
    channel_factor: int = 1
    trans_type: str = "long"
    conv_type: str = "dwpatchconv"
    activation: str = "ReLU"
    input_projection: InputProjection = field(default_factory=InputProjection)
    tokens: tuple[TokenSpec, ...] = (TokenSpec("lrn", 0),)
    global_strategy: str = "identity"
    ff_ratio: float = 2.0
    window_size: int = 3
    share_qkv: bool = True
    pos_emb: str = "rpb"
    kernel_size: int = 2
    stride: int = 2
    dilation: int = 1
    groups: int = 1
    conv_bias: bool = False
    edge_mode: str = "none"
    edge_eps: float = 1e-6
    conv_norm_position: str = "post"
    # head
    aggr_method: str = "multi_addition"
    num_outputs: int | None = None  # inferred from the checkpoint when None
    cls_drop: float = 0.0
    head_act: str = "relu"
    head_div: int = 4
    head_norm: bool = True
    # segmentation decoder (task segmentation; spec 5.2)
    decoder_string: str = ""        # e.g. "11": transformer layers per decoder stage
    dtrans_type: str = "long"
    dconv_type: str = "pixelshuffle"
    skip_first: int = 1             # 1: upsample -> attention -> skip; else upsample -> skip -> Linear -> attention
    connection: str = "concat"      # concat | add | none
    threshold: float = 0.5          # segmentation.threshold: patch positive at sigmoid(logit) >= threshold

    @property
    def num_decoder_stages(self) -> int:
        return len(self.decoder_string)

    @property
    def decoder_layers(self) -> list[int]:
        return [int(c) for c in self.decoder_string]

    def decoder_target_stage(self, i: int) -> int:
        """The encoder stage whose coordinates decoder block i restores (E - 2 - i)."""
        return self.num_stages - 2 - i

    def decoder_in_dim(self, i: int) -> int:
        """Channels entering decoder block i (block L is the final Linear)."""
        if i == 0:
            return self.stage_dim(self.num_stages - 1)
        prev = self.decoder_dim(i - 1)
        return 2 * prev if (self.connection == "concat" and self.skip_first == 1) else prev

    def decoder_dim(self, i: int) -> int:
        """C_out of decoder block i (its upsampler, attention and transformer width)."""
        return self.stage_dim(self.num_stages - 2 - i)

    def decoder_heads(self, i: int) -> int:
        return self.num_heads * (self.decoder_dim(i) // self.embed_dim)

    def has_shift(self, stage: int) -> bool:
        """Stage ``stage``'s attention (encoder, or a decoder block on its coordinates) reads
        the second, shifted windowing."""
        if self.trans_type in ("long", "swin"):
            return True
        decoded = any(self.decoder_target_stage(i) == stage for i in range(self.num_decoder_stages))
        return decoded and self.dtrans_type in ("long", "swin")

    @property
    def num_stages(self) -> int:
        return len(self.encoder_string)

    @property
    def layers_per_stage(self) -> list[int]:
        return [int(c) for c in self.encoder_string]

    def stage_dim(self, s: int) -> int:
        return self.embed_dim * self.channel_factor ** s

    def stage_heads(self, s: int) -> int:
        return self.num_heads * self.channel_factor ** s

    @property
    def num_globals(self) -> int:
        return len(self.tokens)

    @property
    def pad_layers(self) -> int:
        return max(self.num_stages - 1, 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SpanConfig":
        d = dict(d)
        d["input_projection"] = InputProjection(**d["input_projection"])
        d["tokens"] = tuple(TokenSpec(**t) for t in d["tokens"])
        return cls(**d)

    def with_outputs(self, n: int) -> "SpanConfig":
        d = self.to_dict()
        d["num_outputs"] = n
        return SpanConfig.from_dict(d)


def parse_tokens(types: list[Any] | None, where: str) -> tuple[TokenSpec, ...]:
    """Mirror SPAN_Encoder's token parsing; unknown entries produce no token, as officially."""
    out: list[TokenSpec] = []
    counts = {"rand": 0, "fix": 0, "lrn": 0}
    for t in types or []:
        if isinstance(t, bool):
            continue
        if isinstance(t, (int, float)):
            out.append(TokenSpec("rand", counts["rand"]))
            counts["rand"] += 1
            continue
        if isinstance(t, str):
            lower = t.strip().lower()
            if lower in ("max", "mean", "std"):
                out.append(TokenSpec(lower))
                continue
            for prefix in ("fix", "lrn"):
                if not lower.startswith(prefix):
                    continue
                rest = lower[len(prefix):].lstrip(":_")
                try:
                    if rest:
                        float(rest)
                except ValueError:
                    break
                out.append(TokenSpec(prefix, counts[prefix]))
                counts[prefix] += 1
                break
    return tuple(out)


def _pick(section: dict[str, Any], key: str, default: Any) -> Any:
    v = section.get(key, default)
    return default if v is None and default is not None else v


def _num(section: dict[str, Any], key: str, default: Any, where: str, integer: bool = False,
         lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Any:
    """A number from the YAML, type- and range-checked, so a wrong value is one clear line (the
    official builder would crash on it, or build something no checkpoint fits)."""
    v = section.get(key, default)
    if v is None:
        v = default
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if ok and integer:
        ok = float(v).is_integer()
    if ok:
        ok = math.isfinite(float(v)) and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi)
    if not ok:
        kind = "an integer" if integer else "a number"
        rng = "" if lo is None else (f" > {lo:g}" if lo_open else f" >= {lo:g}") + ("" if hi is None else f" and <= {hi:g}")
        raise ConfigError(f"{where}: {key} is {v!r}; expected {kind}{rng}")
    return int(v) if integer else float(v)


def _section(cfg: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = cfg.get(key) or {}
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: '{key}' must be a mapping, got {type(v).__name__}")
    return v


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def from_official(cfg: dict[str, Any], where: str = "config") -> SpanConfig:
    """Resolve a composed official config dict (``model:``, ``task``, head section)."""
    if not isinstance(cfg, dict) or "model" not in cfg or not isinstance(cfg["model"], dict):
        raise ConfigError(f"{where}: no 'model:' section; expected the official composed config "
                          "(model/span.yaml under 'model:' plus the task section), or compose the two YAMLs: the official model/span.yaml under a 'model:' key plus the task keys")
    m = cfg["model"]
    for key in ("slide_configs", "trans_type", "econvs_type", "pos_emb", "global_strategy", "edge_mode",
                "conv_norm_position", "enc_act", "dtrans_type", "dconvs_type"):
        if m.get(key) is not None and not isinstance(m[key], (str, int)) or isinstance(m.get(key), bool):
            raise ConfigError(f"{where}: model.{key} is {m[key]!r}; expected a name")
    task = str(cfg.get("task", "classification")).strip().lower()
    if task not in ("classification", "survival", "segmentation"):
        raise ConfigError(f"{where}: task {task!r} is not supported (classification, survival or segmentation)")
    slide_configs = str(m.get("slide_configs", "111-11" if task == "segmentation" else "111"))
    decoder_string = ""
    if "-" in slide_configs:
        slide_configs, decoder_string = slide_configs.split("-", 1)
        if task != "segmentation":
            raise ConfigError(f"{where}: slide_configs {m.get('slide_configs')!r} has a decoder part, which only "
                              f"the segmentation task builds (task is {task})")
        if not decoder_string.isdigit() or "0" in decoder_string:
            raise ConfigError(f"{where}: the decoder part of slide_configs {m.get('slide_configs')!r} must be "
                              "digits 1-9, one per decoder stage")
    elif task == "segmentation":
        raise ConfigError(f"{where}: a segmentation model needs a decoder part in slide_configs "
                          f"(e.g. '111-11'), got {slide_configs!r}")
    if not slide_configs.isdigit() or "0" in slide_configs:
        raise ConfigError(f"{where}: slide_configs {slide_configs!r} must be digits 1-9, one per stage")
    fv = cfg.get("features_variant", "UNI" if task == "survival" else "R50")
    feat_dim = FEATURE_DIMS.get(str(fv).upper(), 1024) if fv is not None else 1024
    div = _num(m, "embed_dim_div", 2, where, integer=True, lo=1)
    embed_dim = feat_dim // div
    heads = embed_dim // 64
    if heads < 1:
        raise ConfigError(f"{where}: embed dim {embed_dim} (= {feat_dim} // embed_dim_div {div}) gives "
                          "0 heads of 64; the official builder cannot build this")
    trans = str(m.get("trans_type", "long"))
    if trans in ("tradswin", "swin_global"):
        raise ConfigError(f"{where}: trans_type {trans!r} cannot be built by the official config builder "
                          "(tradswin: TypeError on pos_emb_type; swin_global: no layer class), so no "
                          "checkpoint of it exists; use long, long_noshift or swin")
    if trans not in TRANS_TYPES:
        raise ConfigError(f"{where}: unknown trans_type {trans!r}; expected one of {TRANS_TYPES}")
    conv = str(m.get("econvs_type", "dwpatchconv"))
    if conv not in CONV_TYPES:
        raise ConfigError(f"{where}: econvs_type {conv!r} is not supported; expected one of {CONV_TYPES}")
    ip = _section(m, "input_projection", where)
    act = ip.get("activation")
    proj = InputProjection(
        activation=None if act is None else _act_name(act, where),
        mlp_ratio=_num(ip, "mlp_ratio", 0.5, where, lo=0, lo_open=True),
        dropout=_num(ip, "dropout", 0.0, where, lo=0, hi=1),
        prenorm=_bool(ip.get("prenorm", False)),
        bias=_bool(ip.get("bias", True)),
        drop_first=_bool(ip.get("drop_first", False)) if act is None else False,
    )
    pos = str(m.get("pos_emb", "rpb")).lower()
    if pos not in POS_EMBS:
        raise ConfigError(f"{where}: pos_emb {pos!r} unknown; expected one of {POS_EMBS}")
    gs = str(m.get("global_strategy", "identity"))
    edge = str(m.get("edge_mode", "none"))
    if edge not in EDGE_MODES:
        raise ConfigError(f"{where}: edge_mode {edge!r} unknown; expected one of {EDGE_MODES}")
    norm_pos = str(m.get("conv_norm_position", "post"))
    if norm_pos not in NORM_POSITIONS:
        raise ConfigError(f"{where}: conv_norm_position {norm_pos!r} unknown; expected pre or post")
    seg = _segmentation_fields(m, cfg.get("segmentation") or {}, slide_configs, decoder_string, where) \
        if task == "segmentation" else {}
    cf = _num(m, "channel_factor", 1, where, integer=True, lo=1)
    if cf != 1 and task == "classification":
        raise ConfigError(f"{where}: channel_factor {cf}: the classification heads need channel_factor 1")
    raw_tokens = m.get("token_init_types", [1e-4]) or []
    if not isinstance(raw_tokens, (list, tuple)):
        raise ConfigError(f"{where}: model.token_init_types must be a list, got {raw_tokens!r}")
    tokens = parse_tokens(list(raw_tokens), where)

    head = _section(cfg, task, where)
    if task == "segmentation":
        aggr, n_out, head = "none", 1, {}
    elif task == "classification":
        aggr = str(head.get("aggr_method", "multi_addition")).strip().lower()
        if aggr not in CLS_AGGR:
            raise ConfigError(f"{where}: classification.aggr_method {aggr!r} unknown; expected one of {CLS_AGGR}")
        ds = cfg.get("dataset")
        n_out = DATASET_CLASSES.get(str(ds).upper()) if ds is not None else None
    else:
        aggr = str(head.get("aggregation", "multi_addition")).strip().lower()
        if aggr not in SURV_AGGR:
            raise ConfigError(f"{where}: survival.aggregation {aggr!r} unknown; expected one of {SURV_AGGR}")
        n_out = cfg.get("n_groups", head.get("n_groups"))
        n_out = _num({"n_groups": n_out}, "n_groups", None, where, integer=True, lo=1) if n_out is not None else None
    if task != "segmentation" and aggr in ("multi_addition", "mean", "last", "concat", "multiattn") and not tokens and \
            not (task == "classification" and aggr == "multiattn"):
        raise ConfigError(f"{where}: token_init_types gives no global token, but the "
                          f"{aggr} head reads global token 0")
    out = SpanConfig(
        task=task, feat_dim=feat_dim, embed_dim=embed_dim, num_heads=heads, encoder_string=slide_configs,
        channel_factor=cf, trans_type=trans, conv_type=conv, activation=_act_name(m.get("enc_act", "ReLU"), where),
        input_projection=proj, tokens=tokens, global_strategy=gs, ff_ratio=_num(m, "ff_ratio", 2, where, lo=0, lo_open=True),
        window_size=_num(m, "window_size", 3, where, integer=True, lo=1, hi=27), share_qkv=_bool(m.get("share_qkv", True)), pos_emb=pos,
        kernel_size=_num(m, "kernel_size", 2, where, integer=True, lo=1, hi=7),
        stride=_num(m, "stride", 2, where, integer=True, lo=1, hi=7),
        dilation=_num(m, "dilation", 1, where, integer=True, lo=1, hi=7),
        groups=_num(m, "groups", 1, where, integer=True, lo=1), conv_bias=_bool(m.get("conv_bias", False)), edge_mode=edge,
        edge_eps=_num(m, "edge_eps", 1e-6, where, lo=0, lo_open=True), conv_norm_position=norm_pos, aggr_method=aggr,
        num_outputs=n_out, cls_drop=_num(head, "cls_drop", 0.0, where, lo=0, hi=1), head_act=str(head.get("head_act", "relu")),
        head_div=_num(head, "head_div", 4, where, integer=True, lo=1), head_norm=_bool(head.get("head_norm", True)), **seg,
    )
    if task == "segmentation":
        _check_decoder_widths(out, where)
    return out


def _segmentation_fields(m: dict[str, Any], section: dict[str, Any], enc: str, dec: str, where: str) -> dict[str, Any]:
    """The decoder knobs the official builder reads (model.dtrans_type, dconvs_type, skip_first,
    connection; segmentation.threshold), checked for what the official model can run."""
    if len(dec) != len(enc) - 1:
        raise ConfigError(
            f"{where}: slide_configs '{enc}-{dec}' has {len(enc)} encoder and {len(dec)} decoder stages; the "
            "official segmentation model pads for the decoder depth and must end on the padded patch rows, "
            f"which needs exactly {len(enc) - 1} decoder stages (e.g. '{enc}-{'1' * max(len(enc) - 1, 1)}')")
    dtrans = str(m.get("dtrans_type", "long"))
    if dtrans not in TRANS_TYPES:
        raise ConfigError(f"{where}: dtrans_type {dtrans!r} is not supported; expected one of {TRANS_TYPES}")
    dconv = str(m.get("dconvs_type", "pixelshuffle"))
    dconv = DCONV_ALIASES.get(dconv, dconv)
    if dconv not in DCONV_TYPES:
        raise ConfigError(f"{where}: dconvs_type {dconv!r} is not supported; expected one of {DCONV_TYPES} "
                          "(the sparse upsamplers)")
    conn = "none" if m.get("connection") is None else str(m.get("connection")).strip().lower()
    if conn not in CONNECTIONS:
        raise ConfigError(f"{where}: connection {m.get('connection')!r} is not supported; use concat, add or none")
    try:
        skip_first = _num(m, "skip_first", 1, where, integer=True)
        threshold = _num(section, "threshold", 0.5, where, lo=0, lo_open=True)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: model.skip_first must be an integer and segmentation.threshold a "
                          "number") from None
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"{where}: segmentation.threshold {threshold} must lie strictly between 0 and 1")
    return {"decoder_string": dec, "dtrans_type": dtrans, "dconv_type": dconv, "skip_first": skip_first,
            "connection": conn, "threshold": threshold}


def _check_decoder_widths(cfg: "SpanConfig", where: str) -> None:
    """Channel counts the official decoder cannot build (PyTorch refuses the layer)."""
    for i in range(cfg.num_decoder_stages):
        cin, cout = cfg.decoder_in_dim(i), cfg.decoder_dim(i)
        g = cin if cfg.dconv_type == "dwpatchinvs" else cfg.groups if cfg.dconv_type == "patchinvs" else 1
        if cin % g or cout % g:
            raise ConfigError(f"{where}: decoder block {i} ({cfg.dconv_type}) maps {cin} to {cout} channels in "
                              f"{g} groups, which the official ConvTranspose2d cannot build (both must divide by "
                              "the groups; dwpatchinvs needs channel_factor 1 and connection add or none)")
        if cfg.decoder_heads(i) < 1:
            raise ConfigError(f"{where}: decoder block {i} has {cout} channels, less than one 64-wide head")


def _act_name(name: Any, where: str) -> str:
    key = str(name).strip().lower()
    if key not in ACTIVATIONS:
        raise ConfigError(f"{where}: activation {name!r} is not supported; expected one of "
                          f"{sorted(set(ACTIVATIONS.values()))}")
    return ACTIVATIONS[key]


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.load(p.read_text(), Loader=_yaml_loader())  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def load_config(path: str | Path | None = None, *, model_yaml: str | Path | None = None,
                task_yaml: str | Path | None = None) -> SpanConfig:
    """Load a composed official config, or a model YAML (model/span.yaml) plus a task YAML."""
    if path is not None:
        return from_official(read_yaml(path), str(path))
    if model_yaml is None or task_yaml is None:
        raise ConfigError("give a composed config, or both a model YAML and a task YAML")
    model = read_yaml(model_yaml)
    model = model.get("model", model)
    task = read_yaml(task_yaml)
    composed = dict(task)
    composed["model"] = {**model, **(task.get("model") or {})}
    return from_official(composed, f"{model_yaml} + {task_yaml}")
