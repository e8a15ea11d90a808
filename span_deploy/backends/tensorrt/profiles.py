"""TensorRT optimisation profiles for SPAN's dynamic inputs (pure python, no TensorRT).

One profile gives every graph input a (min, opt, max) shape. Only axis 0 is dynamic:

* ``feats`` (n0, F): n0 = N + pads; a slide gets at most one leading and one trailing pad row,
  so n0 ranges over [N_min, N_max + 2] (opt N_opt + 2).
* ``s{s}_pos_*`` / ``s{s}_gather`` / ``s{s}_coords`` (n_s, ...): for s >= 1 the sparse
  downsampling bounds n_s by ``growth * n_{s-1}`` where growth is the largest number of output
  sites one input cell can feed: 1 for the default kernel 2 / stride 2 and patchmerge, up to
  ceil(k/s)^2 when the kernel is larger than the stride. Min 1.
* ``s{s}_win_*`` (W_s, S*S): every stored window holds at least one node, so 1 <= W_s <= n_s.

The static dims (F, S*S, taps, 2) come from the ONNX graph (``onnx_input_shapes``).

A ``--profile FILE`` (YAML or JSON) maps input name -> [min, opt, max], each either an integer
(axis 0; static dims are filled in from the graph) or a full shape list::

    feats: [3, 2002, 100002]            # rows only
    s0_win_u: [[1, 36], [100, 36], [100002, 36]]
    tokens: [1, 2000, 100000]           # optional: N range; derive every input not listed

Inputs the file leaves out are derived from ``tokens`` (required then).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ...config import SpanConfig
from ...errors import SpanDeployError
from ...rulebook import engine_inputs, input_names

PADS = 2  # at most one leading and one trailing pad row at stage 0


class ProfileError(SpanDeployError):
    pass


Shape = tuple[int, ...]


@dataclass(frozen=True)
class TokenRange:
    """Patch (token) counts N of the slides the engine must accept."""
    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        for k in ("min", "opt", "max"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ProfileError(f"--{k}-tokens must be a positive integer, got {v!r}")
        if not self.min <= self.opt <= self.max:
            raise ProfileError(f"token range must satisfy min <= opt <= max; got min {self.min}, "
                               f"opt {self.opt}, max {self.max}")


@dataclass(frozen=True)
class Profile:
    """input name -> (min shape, opt shape, max shape)."""
    shapes: dict[str, tuple[Shape, Shape, Shape]]

    @property
    def max_tokens(self) -> int:
        """The largest slide (patches N) the profile accepts for sure: feats rows minus the pads."""
        return max_tokens_from_feats(self.shapes["feats"][2][0])

    def to_dict(self) -> dict[str, list[list[int]]]:
        return {k: [list(s) for s in v] for k, v in self.shapes.items()}


def max_tokens_from_feats(max_rows: int) -> int:
    return max(int(max_rows) - PADS, 0)


def downsample_growth(cfg: SpanConfig) -> int:
    """Most output sites one input cell can feed at one downsampling (upper bound n_s / n_{s-1})."""
    if cfg.conv_type == "patchmerge":
        return 1
    k, st, d = cfg.kernel_size, cfg.stride, cfg.dilation
    # per axis: taps ky with (a - ky*d) % stride == 0, worst residue a
    per_axis = max(sum(1 for ky in range(k) if (r - ky * d) % st == 0) for r in range(st))
    return per_axis * per_axis


def _estimate(n: int, cfg: SpanConfig) -> int:
    """A typical stage size after one downsampling (for opt): n / stride^2, at least 1."""
    st = 2 if cfg.conv_type == "patchmerge" else max(cfg.stride, 1)
    return max(1, math.ceil(n / (st * st)))


def stage_row_bounds(cfg: SpanConfig, tokens: TokenRange) -> list[tuple[int, int, int]]:
    """(min, opt, max) local rows per stage, pads included."""
    g = downsample_growth(cfg)
    out = [(tokens.min, tokens.opt + PADS, tokens.max + PADS)]
    for _ in range(1, cfg.num_stages):
        _, popt, pmax = out[-1]
        mx = pmax * g
        out.append((1, min(max(1, _estimate(popt, cfg)), mx), mx))
    return out


def derive_rows(cfg: SpanConfig, tokens: TokenRange) -> dict[str, tuple[int, int, int]]:
    """Axis-0 (min, opt, max) of every graph input for a token range."""
    rows = stage_row_bounds(cfg, tokens)
    s2 = (2 * cfg.window_size) ** 2
    out: dict[str, tuple[int, int, int]] = {}
    for spec in engine_inputs(cfg):
        _, nopt, nmax = rows[spec.stage]
        if spec.kind.startswith("win_"):
            # tissue fills about half of the windows it touches: opt ~ 2 n / S^2
            out[spec.name] = (1, min(nmax, max(1, math.ceil(2 * nopt / s2))), nmax)
        else:
            out[spec.name] = rows[spec.stage]
    return out


def static_dims(cfg: SpanConfig, feat_dim: int | None = None) -> dict[str, Shape]:
    """The static trailing dims of each input from the tensor contract (the graph's win over these)."""
    out = {t.name: tuple(int(d) for d in t.dims) for t in engine_inputs(cfg)}
    if feat_dim:
        out["feats"] = (int(feat_dim),)
    return out


def build_profile(cfg: SpanConfig, tokens: TokenRange | None = None,
                  graph_shapes: dict[str, list[int | None]] | None = None,
                  overrides: dict[str, object] | None = None) -> Profile:
    """Full (min, opt, max) shapes: derived from ``tokens``, replaced per input by ``overrides``
    (the parsed --profile file), static dims from ``graph_shapes`` (ONNX) or the config."""
    names = input_names(cfg)
    statics = static_dims(cfg)
    if graph_shapes is not None:
        missing = [n for n in names if n not in graph_shapes]
        if missing:
            raise ProfileError(f"the ONNX graph lacks inputs {missing}; was it exported for this config?")
        for n in names:
            tail = graph_shapes[n][1:]
            if any(d is None for d in tail):
                raise ProfileError(f"ONNX input {n} has dynamic dims beyond axis 0: {graph_shapes[n]}")
            statics[n] = tuple(int(d) for d in tail)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ProfileError(f"profile names unknown inputs {unknown}; the graph inputs are {names}")
    derived = derive_rows(cfg, tokens) if tokens is not None else {}
    shapes: dict[str, tuple[Shape, Shape, Shape]] = {}
    for n in names:
        if n in overrides:
            shapes[n] = _entry(n, overrides[n], statics[n])
        elif n in derived:
            shapes[n] = tuple((r,) + statics[n] for r in derived[n])  # type: ignore[assignment]
        else:
            raise ProfileError(f"no shape range for input {n!r}: list it in the profile file, or give a "
                               "token range (--min/--opt/--max-tokens, or `tokens:` in the file)")
    return Profile(shapes)


def _entry(name: str, value: object, static: Shape) -> tuple[Shape, Shape, Shape]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ProfileError(f"profile entry {name}: expected [min, opt, max], got {value!r}")
    dims: list[Shape] = []
    for v in value:
        if isinstance(v, int) and not isinstance(v, bool):
            shape = (v,) + static
        elif isinstance(v, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            shape = tuple(v)
        else:
            raise ProfileError(f"profile entry {name}: {v!r} is neither a row count nor a shape list")
        if len(shape) != 1 + len(static) or tuple(shape[1:]) != static:
            raise ProfileError(f"profile entry {name}: shape {list(shape)} does not match the graph input "
                               f"(rows, {', '.join(map(str, static)) or '-'})" if static else
                               f"profile entry {name}: shape {list(shape)} must be 1-D (rows,)")
        if shape[0] < 1:
            raise ProfileError(f"profile entry {name}: rows must be >= 1, got {shape[0]}")
        dims.append(shape)
    lo, opt, hi = (d[0] for d in dims)
    if not lo <= opt <= hi:
        raise ProfileError(f"profile entry {name}: rows must satisfy min <= opt <= max, got {lo}, {opt}, {hi}")
    return dims[0], dims[1], dims[2]


def read_profile_file(path: str | Path) -> tuple[dict[str, object], TokenRange | None]:
    """Parse a --profile file: (per-input overrides, optional token range)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ProfileError(f"profile file not found: {p}")
    text = p.read_text()
    try:
        doc = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise ProfileError(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {e}") from None
    if not isinstance(doc, dict) or not doc:
        raise ProfileError(f"{p}: expected a mapping of input name -> [min, opt, max]")
    doc = dict(doc)
    tokens = None
    if "tokens" in doc:
        t = doc.pop("tokens")
        if not isinstance(t, (list, tuple)) or len(t) != 3:
            raise ProfileError(f"{p}: tokens must be [min, opt, max], got {t!r}")
        tokens = TokenRange(*t)
    return doc, tokens


def onnx_input_shapes(path: str | Path) -> dict[str, list[int | None]]:
    """Graph input name -> dims (None for a symbolic dim), read with onnx (no TensorRT)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    out: dict[str, list[int | None]] = {}
    for i in proto.graph.input:
        dims = i.type.tensor_type.shape.dim
        out[i.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return out


def check_fits(profile_max: dict[str, Shape], shapes: dict[str, Shape], num_patches: int,
               profile_min: dict[str, Shape] | None = None) -> None:
    """Raise a clear error when a slide's inputs fall outside the engine's profile."""
    over = [(n, s, profile_max[n]) for n, s in shapes.items()
            if n in profile_max and any(a > b for a, b in zip(s, profile_max[n]))]
    if over:
        name, got, mx = over[0]
        raise ProfileError(
            f"the slide has {num_patches} patches; input {name} needs shape {list(got)} but the engine's "
            f"profile allows at most {list(mx)} (max tokens ~ {max_tokens_from_feats(profile_max['feats'][0])}); "
            "rebuild the engine with a larger --max-tokens")
    under = [(n, s, profile_min[n]) for n, s in shapes.items()
             if profile_min and n in profile_min and any(a < b for a, b in zip(s, profile_min[n]))]
    if under:
        name, got, mn = under[0]
        raise ProfileError(
            f"the slide has {num_patches} patches; input {name} has shape {list(got)}, below the engine's "
            f"profile minimum {list(mn)}; rebuild the engine with a smaller --min-tokens")


DEFAULT_TOKENS = TokenRange(1, 20000, 200000)


def resolve_tokens(min_tokens: int | None, opt_tokens: int | None, max_tokens: int | None) -> TokenRange:
    """The CLI's token range: defaults fill what is not given; opt is clipped into [min, max]
    only when it was not given (a given opt outside the range is an error)."""
    lo = DEFAULT_TOKENS.min if min_tokens is None else min_tokens
    hi = DEFAULT_TOKENS.max if max_tokens is None else max_tokens
    if hi is not None and lo is not None and isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        raise ProfileError(f"--min-tokens {lo} is larger than --max-tokens {hi}")
    opt = opt_tokens if opt_tokens is not None else min(max(DEFAULT_TOKENS.opt, lo), hi)
    return TokenRange(lo, opt, hi)
