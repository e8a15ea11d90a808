#!/usr/bin/env python3
"""Whole-model check: our torch backend vs the official SPAN model, same weights, same slide.

  python tools/gpu_model_check.py [--device cuda|cpu] [--sizes 20000 100000] [--json PATH]
                                  [--carry DIR] [--runs 3] [--warmup 1] [--no-fp16]
  python tools/gpu_model_check.py --ort-ep LIB [--sizes 20000] [--json PATH]   # ORT CUDA EP vs CPU EP

The default SPAN config (the official configs/classification.yaml over configs/model/span.yaml:
R50 1024-d features, D 512, 8 heads, stages 111, window 3, `long` attention, multi_addition head),
composed from the staged official source when there, else the same values held here. Weights: the
official model built with torch.manual_seed(--seed), every parameter then perturbed as
../shared/tools/official/make_fixtures.py does (so no default-init symmetry hides a wrong port),
saved as an official state_dict checkpoint; our loader (span_export) and the official
load_state_dict read that same file. Slides: span_deploy.bench.tissue_tokens.tissue_slide(N,
seed 0, 1024-d N(0,1) features), the benches' tissue-shaped synthetic slide.

Per size, one model on the device at a time (the others deleted, the allocator emptied):
  ours fp32   span_deploy.backends.torch (TorchBackend): forward = model(*engine inputs on the
              device), CUDA-synchronised; e2e = TorchBackend.run (host rulebook + H2D + forward +
              D2H), what a caller pays
  ours fp16   span_export.onnx_export.fp16_model (what the fp16 export runs: fp16 encoder, fp32
              LayerNorm / softmax statistics / head), same inputs with fp16 features
  official    the official SPANClassifier (padder -> encoder -> head; it builds its DGL graphs inside
              the forward) with the pure-PyTorch DGL stand-in, coords/feats on the device after the
              official loader steps (/224, minus min, truncate, row-major sort)
Times: median of --runs after --warmup. Memory: torch.cuda.max_memory_allocated over those runs
after reset_peak_memory_stats (base = allocated before: weights + inputs). fp32 is compared with
TF32 off. Pass: fp32 logits max|ours - official| <= 1e-4 at every size (fp16 is reported only).

Where a module the official code imports is missing (the GPU image has timm, einops and pandas but
no omegaconf, unless tools/gpu_stage.sh staged it into CARRY/site) a minimal stand-in is used and
listed in the JSON under "stand_ins". Exit: 0 pass, 1 mismatch, 2 error, 3 official model
unavailable (ours still measured).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOL_FP32 = 1e-4
TOL_FP16_INFO = 5e-2          # reported against, never gating
FEAT_DIM = 1024

# The official default classification config, composed (what ../shared/fixtures/cls_default_r50 holds).
DEFAULT_CONFIG = {
    "model": {"slide_configs": "111", "channel_factor": 1, "trans_type": "long", "econvs_type": "dwpatchconv",
              "enc_act": "ReLU", "embed_dim_div": 2,
              "input_projection": {"mlp_ratio": 0.5, "activation": None, "dropout": 0.05, "prenorm": False,
                                   "bias": False, "drop_first": False},
              "token_init_types": ["lrn1e-4"], "global_strategy": "identity", "ff_ratio": 2, "attn_drop": 0.05,
              "proj_drop": 0.0, "drop_path": 0.0, "window_size": 3, "share_qkv": False, "pos_emb": "rpb",
              "pos_std": 0.02, "kernel_size": 2, "stride": 2, "dilation": 1, "conv_bias": False,
              "edge_mode": "count", "edge_eps": 1e-6, "conv_norm_position": "pre"},
    "task": "classification", "dataset": "C16", "features_variant": "R50",
    "classification": {"aggr_method": "multi_addition", "cls_drop": 0.05, "head_act": "relu", "head_div": 4,
                       "head_norm": True},
}


def log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------ environment
def setup_paths(carry: Path | None, official_src: Path | None, shim: Path | None) -> dict:
    """Our packages (repo, repo/export) and the staged official source, stand-in and site folder."""
    for p in (REPO / "export", REPO):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
    if carry is not None:
        official_src = official_src or carry / "official"
        shim = shim or carry / "dglshim"
        if (carry / "site").is_dir():
            sys.path.append(str(carry / "site"))      # after the image's own packages
    info = {"official_src": None, "dglshim": None, "commit": None, "reason": None}
    if official_src is None or not (official_src / "src" / "span" / "model.py").is_file():
        info["reason"] = (f"official source not found at {official_src}" if official_src else
                          "no official source given") + " (run tools/gpu_stage.sh, or pass --carry / --official-src)"
        return info
    if shim is None or not (shim / "dgl" / "__init__.py").is_file():
        info["reason"] = f"DGL stand-in not found at {shim}"
        return info
    sys.dont_write_bytecode = True                      # never write into the staged source
    sys.path.insert(0, str(shim))
    sys.path.insert(0, str(official_src))
    commit = official_src / ".span_commit"
    info.update(official_src=str(official_src), dglshim=str(shim),
                commit=commit.read_text().strip() if commit.is_file() else None)
    return info


def install_stand_ins() -> list[str]:
    """Minimal stand-ins for third-party modules the official model code imports, only where the
    real one does not import. None of them changes an eval forward of the default config: DropPath
    is built only for drop_path > 0, trunc_normal_ only initialises (the checkpoint overwrites it),
    rearrange is used by RoPE only, pandas by dataset code only, omegaconf.DictConfig is a type hint."""
    import importlib

    used = []

    def missing(name: str) -> bool:
        try:
            importlib.import_module(name)
            return False
        except Exception:  # noqa: BLE001 - a broken install counts as missing
            for k in [k for k in sys.modules if k == name.split(".")[0] or k.startswith(name.split(".")[0] + ".")]:
                del sys.modules[k]
            return True

    if missing("omegaconf"):
        m = types.ModuleType("omegaconf")

        class DictConfig(dict):
            def __getattr__(self, k):
                try:
                    return self[k]
                except KeyError:
                    raise AttributeError(k) from None

        def create(d):
            if isinstance(d, dict):
                return DictConfig({k: create(v) for k, v in d.items()})
            if isinstance(d, list):
                return [create(v) for v in d]
            return d

        m.DictConfig = DictConfig
        m.OmegaConf = types.SimpleNamespace(create=create, to_container=lambda c, resolve=True: c)
        m.IS_SPAN_STAND_IN = True
        sys.modules["omegaconf"] = m
        used.append("omegaconf")
    if missing("timm.layers"):
        import torch
        from torch import nn

        class DropPath(nn.Module):
            def __init__(self, drop_prob=0.0, scale_by_keep=True):
                super().__init__()
                self.drop_prob, self.scale_by_keep = drop_prob, scale_by_keep

            def forward(self, x):
                if self.drop_prob == 0.0 or not self.training:
                    return x
                keep = 1 - self.drop_prob
                mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
                return x * mask / keep if self.scale_by_keep else x * mask

        def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
            return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)

        timm = types.ModuleType("timm")
        layers = types.ModuleType("timm.layers")
        layers.DropPath, layers.trunc_normal_ = DropPath, trunc_normal_
        timm.layers = layers
        timm.IS_SPAN_STAND_IN = True
        sys.modules.update({"timm": timm, "timm.layers": layers})
        used.append("timm")
    if missing("einops"):
        m = types.ModuleType("einops")

        def rearrange(x, pattern, **axes):
            p = " ".join(pattern.split())
            if p == "... (d r) -> ... d r":
                return x.reshape(*x.shape[:-1], -1, int(axes["r"]))
            if p == "... d r -> ... (d r)":
                return x.reshape(*x.shape[:-2], -1)
            raise NotImplementedError(f"einops stand-in: pattern {pattern!r}")

        m.rearrange = rearrange
        m.IS_SPAN_STAND_IN = True
        sys.modules["einops"] = m
        used.append("einops")
    if missing("pandas"):
        m = types.ModuleType("pandas")
        m.IS_SPAN_STAND_IN = True
        sys.modules["pandas"] = m
        used.append("pandas")
    return used


def official_config(info: dict) -> tuple[dict, str]:
    """The composed default config: from the staged official configs/ when there, else held here."""
    import yaml

    if info.get("official_src"):
        root = Path(info["official_src"]) / "configs"
        task = yaml.safe_load((root / "classification.yaml").read_text())
        model = yaml.safe_load((root / "model" / "span.yaml").read_text())
        cfg = {"model": model, **{k: task[k] for k in ("task", "dataset", "features_variant", "classification")}}
        cfg["model"]["edge_eps"] = float(cfg["model"]["edge_eps"])   # YAML 1.1 reads 1e-6 as a string
        if cfg != DEFAULT_CONFIG:
            log("warning: the official default config differs from the one held here; using the official one")
        return cfg, f"{root}/classification.yaml + model/span.yaml"
    return json.loads(json.dumps(DEFAULT_CONFIG)), "held in tools/gpu_model_check.py (official source absent)"


# ------------------------------------------------------------------------------------ weights
def perturb(model, seed: int) -> None:
    """make_fixtures.py's perturbation: every parameter moved off its default initialisation."""
    import torch

    g = torch.Generator().manual_seed(seed * 7919 + 13)
    done = set()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(1 + 0.25 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                done |= {id(m.weight), id(m.bias)}
        for name, p in model.named_parameters():
            if id(p) in done:
                continue
            r = torch.randn(p.shape, generator=g)
            if "learnable_tokens" in name or "adjustment_tables" in name:
                p.copy_(r)
            elif p.dim() >= 2 and float(p.std()) == 0.0:
                p.copy_(r / math.sqrt(p.shape[-1]))
            elif p.numel() > 1 and float(p.std()) > 0:
                p.add_(0.5 * float(p.std()) * r)
            else:
                p.add_(0.5 * r)


def build_official(cfg: dict, state_dict=None, seed: int = 0):
    """The official SPANClassifier (eval). Without a state_dict: seeded construction + perturbation."""
    import torch
    from omegaconf import OmegaConf
    from tasks.vision.slide.classification.model import build_model

    if state_dict is None:
        torch.manual_seed(seed)
    model = build_model(OmegaConf.create(cfg), num_classes=2)
    if state_dict is None:
        perturb(model, seed)
    else:
        res = model.load_state_dict(state_dict, strict=True)
        assert not res.missing_keys and not res.unexpected_keys, res
    return model.eval()


def make_checkpoint(cfg: dict, work: Path, seed: int, have_official: bool) -> tuple[Path, Path, str]:
    """config.yaml + checkpoint.pt (an official state_dict) in ``work``."""
    import torch
    import yaml

    cfg_path, ckpt = work / "config.yaml", work / "checkpoint.pt"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    if have_official:
        model = build_official(cfg, seed=seed)
        origin = "official model, torch.manual_seed(%d) + make_fixtures perturbation" % seed
    else:  # same key layout: our module tree mirrors the official one
        from span_deploy.config import load_config
        from span_export.model import build_model
        torch.manual_seed(seed)
        model = build_model(load_config(cfg_path), 2)
        perturb(model, seed)
        origin = "our model (official absent), torch.manual_seed(%d) + make_fixtures perturbation" % seed
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, ckpt)
    del model
    return cfg_path, ckpt, origin


# ------------------------------------------------------------------------------------ measuring
class Meter:
    def __init__(self, device: str):
        import torch
        self.torch, self.cuda = torch, device == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def free(self):
        import gc
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def measure(self, fn, warmup: int, runs: int) -> dict:
        """Median wall time of fn() (synchronised) and the peak allocation above what was live."""
        torch = self.torch
        self.sync()
        base = torch.cuda.memory_allocated() if self.cuda else None
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        out = None
        for _ in range(warmup):
            out = fn()
        times = []
        for _ in range(max(runs, 1)):
            self.sync()
            t = time.perf_counter()
            out = fn()
            self.sync()
            times.append(time.perf_counter() - t)
        res = {"ms": 1e3 * statistics.median(times), "runs_ms": [round(1e3 * x, 3) for x in times]}
        if self.cuda:
            res.update(peak_mb=torch.cuda.max_memory_allocated() / 2**20, base_mb=base / 2**20)
        return res, out


def to_list(t) -> list[float]:
    return [float(v) for v in t.detach().float().cpu().reshape(-1).tolist()]


def max_abs(a: list[float] | None, b: list[float] | None) -> float | None:
    if a is None or b is None:
        return None
    return max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) else float("inf")


def run_size(n: int, a, meter: Meter, ckpt: Path, cfg_path: Path, cfg: dict, have_official: bool) -> dict:
    import numpy as np
    import torch

    from span_deploy.backends.torch import open_torch_backend
    from span_deploy.bench.tissue_tokens import tissue_slide
    from span_deploy.rulebook import build_rulebook

    dev = torch.device(a.device)
    t0 = time.perf_counter()
    coords, feats = tissue_slide(n, seed=0, feat_dim=FEAT_DIM)
    row: dict = {"n": n, "slide_s": round(time.perf_counter() - t0, 3)}
    log(f"-- {n} patches (slide made in {row['slide_s']} s)")

    # ---- ours: fp32 (and fp16), the torch backend
    backend = open_torch_backend(ckpt, cfg_path, device=a.device)
    model = backend.model
    t0 = time.perf_counter()
    rb = build_rulebook(coords, backend.cfg)
    inputs = rb.engine_inputs(backend.cfg, feats)
    row["rulebook_ms"] = 1e3 * (time.perf_counter() - t0)
    row["stage_sizes"] = [int(s) for s in rb.stage_sizes]
    args = [torch.from_numpy(np.ascontiguousarray(inputs[k])).to(dev) for k in model.input_names]
    del inputs

    def ours():
        with torch.inference_mode():
            return model(*args)[0]
    try:
        m, out = meter.measure(ours, a.warmup, a.runs)
        m["logits"] = to_list(out)
        e2e, res = meter.measure(lambda: backend.run(coords, feats), 0, 1 if a.device == "cpu" else a.runs)
        m["e2e_ms"] = e2e["ms"]
        m["e2e_vs_forward_max_abs"] = max_abs(m["logits"], [float(v) for v in np.asarray(res.logits).reshape(-1)])
        row["ours_fp32"] = m
        log(f"   ours fp32: {m['ms']:.1f} ms forward, {m['e2e_ms']:.1f} ms e2e"
            + (f", peak {m['peak_mb']:.0f} MB" if "peak_mb" in m else ""))
    except Exception as e:  # noqa: BLE001 - OOM or a bug: recorded, the others still run
        row["ours_fp32"] = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
        log(f"   ours fp32: {row['ours_fp32']['error']}")
    if not a.no_fp16:
        try:
            from span_export.onnx_export import fp16_model
            m16, hooks = fp16_model(model)
            del backend, model
            meter.free()
            m16 = m16.to(dev)
            args16 = [args[0].half()] + args[1:]
            del args
            meter.free()

            def ours16():
                with torch.inference_mode():
                    return m16(*args16)[0]
            m, out = meter.measure(ours16, a.warmup, a.runs)
            m["logits"] = to_list(out)
            row["ours_fp16"] = m
            log(f"   ours fp16: {m['ms']:.1f} ms forward" + (f", peak {m['peak_mb']:.0f} MB" if "peak_mb" in m else ""))
            del m16, args16, hooks
        except Exception as e:  # noqa: BLE001
            row["ours_fp16"] = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
            log(f"   ours fp16: {row['ours_fp16']['error']}")
    backend = model = args = None  # noqa: F841 - drop ours before the official model is measured
    meter.free()

    # ---- official
    if have_official:
        try:
            from src.span.preprocessing.spatial_utils import get_sorted_indices
            sd = torch.load(ckpt, map_location="cpu", weights_only=True)
            off = build_official(cfg, state_dict=sd).to(dev)
            del sd
            # the official loader steps (tasks/vision/shared/data.py normalize_coords + sort_instances)
            pos = torch.from_numpy(coords).float() / 224.0
            pos = (pos - pos.min(dim=0, keepdim=True).values).int()
            order = get_sorted_indices(pos)
            pos_d, x_d = pos[order].to(dev), torch.from_numpy(feats)[order].to(dev)
            meter.free()

            def official():
                with torch.no_grad():
                    return off(pos_d, x_d)
            m, out = meter.measure(official, a.warmup, a.runs)
            m["logits"] = to_list(out)
            row["official"] = m
            log(f"   official:  {m['ms']:.1f} ms forward" + (f", peak {m['peak_mb']:.0f} MB" if "peak_mb" in m else ""))
            del off, pos_d, x_d
        except Exception as e:  # noqa: BLE001
            row["official"] = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
            log(f"   official: {row['official']['error']}")
            if a.verbose:
                traceback.print_exc()
        meter.free()
    ref = row.get("official", {}).get("logits")
    row["max_abs_fp32"] = max_abs(row.get("ours_fp32", {}).get("logits"), ref)
    row["max_abs_fp16"] = max_abs(row.get("ours_fp16", {}).get("logits"), ref)
    row["pass"] = row["max_abs_fp32"] is not None and row["max_abs_fp32"] <= TOL_FP32
    return row


# ------------------------------------------------------------------------------------ ORT CUDA EP
def ort_ep_check(a, ckpt: Path, cfg_path: Path) -> dict:
    """The plugin export through ORT's CUDA EP (our custom op's CUDA kernel) vs its CPU EP."""
    import numpy as np
    import onnxruntime as ort

    from span_deploy.backends.onnxruntime import OrtBackend
    from span_deploy.bench.tissue_tokens import tissue_slide
    from span_export import export_checkpoint

    os.environ["SPAN_DEPLOY_OPS_LIB"] = str(Path(a.ort_ep).resolve())
    res = {"onnxruntime": ort.__version__, "providers": ort.get_available_providers(), "ops_lib": a.ort_ep,
           "sizes": []}
    onnx_path = export_checkpoint(ckpt, cfg_path, ckpt.parent / "span_plugin.onnx", attention="plugin")
    cpu, gpu = OrtBackend(onnx_path, device="cpu"), OrtBackend(onnx_path, device="cuda")
    res["session_providers"] = gpu.session.get_providers()
    for n in a.sizes:
        coords, feats = tissue_slide(n, seed=0, feat_dim=FEAT_DIM)
        gpu.run(coords, feats)                                   # warm-up (cuDNN / allocator)
        t = [gpu.run(coords, feats) for _ in range(max(a.runs, 1))]
        c = cpu.run(coords, feats)
        d = float(np.abs(np.asarray(t[-1].logits) - np.asarray(c.logits)).max())
        res["sizes"].append({"n": n, "cuda_compute_ms": 1e3 * statistics.median(r.timings["compute"] for r in t),
                             "cpu_compute_ms": 1e3 * c.timings["compute"], "max_abs_cuda_vs_cpu": d,
                             "pass": d <= TOL_FP32})
        log(f"   ORT {n}: CUDA EP {res['sizes'][-1]['cuda_compute_ms']:.1f} ms, CPU EP "
            f"{res['sizes'][-1]['cpu_compute_ms']:.1f} ms, max|d| {d:.2e}")
    res["pass"] = all(s["pass"] for s in res["sizes"])
    return res


# ------------------------------------------------------------------------------------ report
def table(result: dict) -> str:
    def f(v, spec=".1f"):
        return "-" if v is None else format(v, spec)
    lines = [f"{'N':>7} {'stages':>20} {'model':<10} {'fwd ms':>9} {'e2e ms':>9} {'peak MB':>9} "
             f"{'base MB':>8} {'max|d| vs official':>19}"]
    for r in result["sizes"]:
        for key, label, d in (("ours_fp32", "ours fp32", r.get("max_abs_fp32")),
                              ("ours_fp16", "ours fp16", r.get("max_abs_fp16")), ("official", "official", None)):
            m = r.get(key)
            if m is None:
                continue
            if "error" in m:
                lines.append(f"{r['n']:>7} {'':>20} {label:<10} error: {m['error'][:80]}")
                continue
            verdict = "" if d is None else (f"{d:.2e}" + ("" if key != "ours_fp32" else
                                                          (" ok" if d <= TOL_FP32 else " FAIL")))
            lines.append(f"{r['n']:>7} {'/'.join(map(str, r.get('stage_sizes', []))):>20} {label:<10} "
                         f"{f(m.get('ms')):>9} {f(m.get('e2e_ms')):>9} {f(m.get('peak_mb'), '.0f'):>9} "
                         f"{f(m.get('base_mb'), '.0f'):>8} {verdict:>19}")
    return "\n".join(lines)


def write_json(path: str | None, result: dict) -> None:
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(result, fh, indent=1)
        os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    ap.add_argument("--json", help="write the results here (rewritten after every size)")
    ap.add_argument("--carry", type=Path, default=os.environ.get("SPAN_GPU_CARRY") or REPO / ".gpu-carry",
                    help="staged folder (tools/gpu_stage.sh): official/, dglshim/, site/ (default .gpu-carry)")
    ap.add_argument("--official-src", type=Path, help="official SPAN source (default CARRY/official)")
    ap.add_argument("--dglshim", type=Path, help="folder holding the dgl stand-in (default CARRY/dglshim)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="weights seed")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--no-fp16", action="store_true")
    ap.add_argument("--budget-s", type=float, default=0, help="skip sizes not started within this many seconds")
    ap.add_argument("--ort-ep", metavar="LIB", help="ORT mode: custom-op library built with CUDA")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    t_start = time.perf_counter()
    carry = Path(a.carry).resolve() if a.carry else None
    info = setup_paths(carry, a.official_src, a.dglshim)
    result: dict = {"device": a.device, "sizes_asked": a.sizes, "tol_fp32": TOL_FP32, "sizes": [],
                    "official": info, "python": platform.python_version()}
    try:
        stand_ins = install_stand_ins() if info["official_src"] else []
        import torch
        if a.threads:
            torch.set_num_threads(a.threads)
        # fp32 comparison: no TF32 anywhere (official and ours alike)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        result.update(torch=torch.__version__, cuda=torch.version.cuda, threads=torch.get_num_threads(),
                      stand_ins=stand_ins, tf32=False)
        if a.device == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("--device cuda but torch.cuda.is_available() is False")
            p = torch.cuda.get_device_properties(0)
            result["gpu"] = {"name": p.name, "memory_gb": round(p.total_memory / 1e9, 1),
                             "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count}
        have_official = bool(info["official_src"])
        if have_official:
            import dgl
            result["official"]["dgl"] = getattr(dgl, "__version__", "?")
            if not getattr(dgl, "IS_SPAN_SHIM", False):
                log("warning: a real DGL was imported, not the stand-in")
        cfg, source = official_config(info)
        result["config_source"] = source
        log(f"torch {torch.__version__} on {a.device}"
            + (f" ({result['gpu']['name']})" if "gpu" in result else "")
            + f"; official: {info['official_src'] or 'absent: ' + str(info['reason'])}"
            + (f"; stand-ins: {', '.join(stand_ins)}" if stand_ins else ""))
        with tempfile.TemporaryDirectory(prefix="span_gpu_model_") as work:
            cfg_path, ckpt, origin = make_checkpoint(cfg, Path(work), a.seed, have_official)
            result["weights"] = origin
            if a.ort_ep:
                result["ort"] = ort_ep_check(a, ckpt, cfg_path)
                write_json(a.json, result)
                return 0 if result["ort"]["pass"] else 1
            meter = Meter(a.device)
            for n in a.sizes:
                if a.budget_s and time.perf_counter() - t_start > a.budget_s:
                    result["sizes"].append({"n": n, "skipped": f"time budget {a.budget_s:.0f} s spent"})
                    log(f"-- {n} patches: skipped (time budget)")
                    continue
                result["sizes"].append(run_size(n, a, meter, ckpt, cfg_path, cfg, have_official))
                write_json(a.json, result)
    except Exception as e:  # noqa: BLE001 - reported in the JSON, exit 2
        result["error"] = f"{type(e).__name__}: {str(e)[:1000]}"
        traceback.print_exc()
        result["seconds"] = round(time.perf_counter() - t_start, 1)
        write_json(a.json, result)
        return 2
    measured = [r for r in result["sizes"] if "skipped" not in r]
    result["pass"] = bool(measured) and all(r["pass"] for r in measured) and len(measured) == len(a.sizes)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(a.json, result)
    log(table(result))
    if not result["official"]["official_src"]:
        log(f"official model unavailable: {result['official']['reason']}")
        return 3
    log(f"model check: {'PASS' if result['pass'] else 'FAIL'} (fp32 logits within {TOL_FP32:g} of the official "
        f"model at every size: {[r.get('max_abs_fp32') for r in result['sizes']]})")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
