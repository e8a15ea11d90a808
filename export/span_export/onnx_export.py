"""PyTorch SPAN -> ONNX: a plugin graph (one SparseWindowAttention node per window attention)
or a portable graph (standard ops only). Rulebook tables are graph inputs (rulebook/TABLES.md).

Uses torch's TorchScript-based exporter (``dynamo=False``): the custom node comes from an
autograd.Function ``symbolic`` as a plain node -- never an ONNX local function, which TensorRT
< 10.7 would let shadow the plugin.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from span_deploy.bench.tissue_tokens import tissue_slide
from span_deploy.config import SpanConfig
from span_deploy.errors import SpanDeployError
from span_deploy.metadata import ATTENTIONS, METADATA_KEY, make_metadata
from span_deploy.rulebook import build_rulebook, io

OP_DOMAIN = "span_deploy"
OP_TYPE = "SparseWindowAttention"
DEFAULT_OPSET = 17


def _custom_op():
    import torch

    from .model.attention import window_attention

    class SparseWindowAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, win_a, pos_a, win_b, pos_b, bias, num_heads, head_dim, side, scale, mode):
            return window_attention(q, k, v, win_a, pos_a, win_b if mode else None, pos_b if mode else None,
                                    bias, num_heads, side, scale)

        @staticmethod
        def symbolic(g, q, k, v, win_a, pos_a, win_b, pos_b, bias, num_heads, head_dim, side, scale, mode):
            out = g.op(f"{OP_DOMAIN}::{OP_TYPE}", q, k, v, win_a, pos_a, win_b, pos_b, bias,
                       num_heads_i=num_heads, head_dim_i=head_dim,
                       window_i=side, scale_f=scale, mode_i=mode,
                       plugin_version_s="1", plugin_namespace_s=OP_DOMAIN)
            # rows are dynamic: a traced static row count would clash with the dynamic inputs
            out.setType(q.type().with_sizes([None, num_heads * head_dim]))
            return out

    def op(q, k, v, win_a, pos_a, win_b, pos_b, bias_table, num_heads, side, scale):
        mode = 0 if win_b is None else 1
        if win_b is None:  # the node always has 8 inputs; B is ignored when mode = 0
            win_b, pos_b = win_a, pos_a
        head_dim = int(round(scale ** -2))  # scale = head_dim ** -0.5; channels are static
        return SparseWindowAttention.apply(q, k, v, win_a, pos_a, win_b, pos_b, bias_table.float().contiguous(),
                                           num_heads, head_dim, side, float(scale), mode)
    return op


def sample_rulebook_inputs(cfg: SpanConfig, n: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    """Engine inputs of a small blob-shaped slide with the shift active: the trace example."""
    coords, feats = tissue_slide(n, seed=seed, feat_dim=cfg.feat_dim)
    return build_rulebook(coords, cfg).engine_inputs(cfg, feats)


def fp16_model(model):
    """An fp16 copy of ``model`` for export (the caller's model is left untouched).

    fp16: the encoder's weights and activations, the ``feats`` input. fp32: every LayerNorm
    (input upcast, output cast back), the window/relay attention's scores and softmax statistics
    (model.attention upcasts fp16 q/k/v), the global-token statistics over the slide, and the head
    -- so every graph output is float32.
    """
    import copy

    import torch
    from torch import nn

    target = copy.deepcopy(model).half()
    for name, child in target.named_children():
        if name != "encoder":
            child.float()
    enc = target.encoder
    for key, buf in list(enc._buffers.items()):
        if buf is not None and buf.is_floating_point():
            enc._buffers[key] = buf.float()
    for p in enc.learnable_tokens:
        p.data = p.data.float()
    hooks = []

    def to32(mod, args):
        mod._span_in_dtype = args[0].dtype
        return (args[0].float(),) + tuple(args[1:])

    def back(mod, args, out):
        return out.to(mod._span_in_dtype)

    for m in enc.modules():
        if isinstance(m, nn.LayerNorm):
            m.float()
            hooks.append(m.register_forward_pre_hook(to32))
            hooks.append(m.register_forward_hook(back))
    assert all(p.dtype == torch.float32 for n, p in target.named_parameters() if not n.startswith("encoder."))
    return target, hooks


def _keep_contract_inputs(proto, cfg: SpanConfig, precision: str) -> None:
    """Every graph takes every input of the tensor contract, in its order. The tracer drops an
    input nothing reads (the last stage's window tables, when the head reads only that stage's
    global tokens and the locals' attention there is dead code); it is put back, unused, so
    backends, Triton configs and polygraphy feeds see one input list for every config."""
    from onnx import TensorProto, helper

    have = {i.name: i for i in proto.graph.input}
    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "int32": TensorProto.INT32,
            "int64": TensorProto.INT64}
    ordered = []
    for spec in io.engine_inputs(cfg, precision):
        if spec.name in have:
            ordered.append(have.pop(spec.name))
        else:
            dims = [spec.rows] + [d if d is not None else f"{spec.name}_dim{i + 1}" for i, d in enumerate(spec.dims)]
            ordered.append(helper.make_tensor_value_info(spec.name, elem[spec.dtype], dims))
    if have:   # pragma: no cover - the model's forward takes exactly the contract's inputs
        raise SpanDeployError(f"the exported graph has inputs outside the contract: {sorted(have)}")
    del proto.graph.input[:]
    proto.graph.input.extend(ordered)


def export_onnx(model, out_path: str | Path, attention: str = "plugin", opset: int = DEFAULT_OPSET,
                fp16: bool = False) -> Path:
    """Export an eval-mode SpanModel; the file is written atomically. Returns the path."""
    import onnx
    import torch

    from .model.transformer import TransBlock

    if attention not in ATTENTIONS:
        raise SpanDeployError(f"--attention must be plugin or portable, not {attention!r}")
    cfg: SpanConfig = model.cfg
    sample = sample_rulebook_inputs(cfg)
    args = tuple(torch.from_numpy(np.ascontiguousarray(sample[n])) for n in model.input_names)
    if fp16:
        args = (args[0].half(),) + args[1:]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    saved = TransBlock.__dict__["window_op"]  # the staticmethod object itself
    if attention == "plugin":
        TransBlock.window_op = staticmethod(_custom_op())
    else:
        from .model.attention import window_attention
        TransBlock.window_op = staticmethod(
            lambda q, k, v, wa, pa, wb, pb, b, h, s, sc: window_attention(q, k, v, wa, pa, wb, pb, b, h, s, sc, None))
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out_path.parent)
    os.close(fd)
    hooks = []
    try:
        if fp16:
            target, hooks = fp16_model(model)
        else:
            target = model
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer's notes are about shapes the rulebook inputs make dynamic on purpose (the
            # graph is checked against the goldens instead); the legacy-exporter notice is known.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*aten::index operator of advanced indexing.*")
            warnings.filterwarnings("ignore", message=".*The feature will be removed.*")
            torch.onnx.export(
                target, args, tmp, dynamo=False, input_names=model.input_names, output_names=model.output_names,
                dynamic_axes=io.dynamic_axes(cfg), opset_version=opset,
                custom_opsets={OP_DOMAIN: 1} if attention == "plugin" else None, do_constant_folding=True)
        proto = onnx.load(tmp)
        _keep_contract_inputs(proto, cfg, "fp16" if fp16 else "fp32")
        meta = make_metadata(cfg, attention, "fp16" if fp16 else "fp32")
        if attention == "plugin":
            # The tracer's intermediate shapes around the custom node mix symbolic and traced dims;
            # runtimes infer them again from the inputs.
            del proto.graph.value_info[:]
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(meta)})
        proto.producer_name = "span-deploy"
        onnx.save(proto, tmp)
        onnx.checker.check_model(tmp, full_check=True)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, out_path)
    finally:
        TransBlock.window_op = saved
        for h in hooks:
            h.remove()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_path
