"""The PyTorch SPAN (imports torch): build from a config, load an official checkpoint."""
from __future__ import annotations

from pathlib import Path

from span_deploy.config import SpanConfig, load_config
from span_deploy.errors import CheckpointError
from .span import SpanModel, SpanSegModel, build_model

__all__ = ["SpanModel", "SpanSegModel", "build_model", "load_model"]


def load_model(checkpoint: str | Path, config: str | Path | SpanConfig) -> SpanModel:
    """An eval-mode SpanModel with the checkpoint's weights (feature dim and outputs inferred)."""
    from ..checkpoint import infer_feat_dim, infer_num_outputs, key_mismatch_message, read_state_dict

    cfg = config if isinstance(config, SpanConfig) else load_config(config)
    where = str(checkpoint)
    sd = read_state_dict(checkpoint)
    f = infer_feat_dim(sd)
    if f is not None and f != cfg.feat_dim:
        div = cfg.feat_dim // cfg.embed_dim
        if f % div or (f // div) // 64 < 1:
            raise CheckpointError(f"{where}: {f}-d features in the checkpoint do not fit embed_dim_div {div}")
        d = cfg.to_dict()
        d.update(feat_dim=f, embed_dim=f // div, num_heads=(f // div) // 64)
        cfg = SpanConfig.from_dict(d)
    n_out = infer_num_outputs(cfg, sd, where)
    cfg = cfg.with_outputs(n_out)
    model = build_model(cfg, n_out)
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        raise CheckpointError(key_mismatch_message(missing, unexpected, where))
    bad = [k for k in own if tuple(own[k].shape) != tuple(sd[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{where}: {len(bad)} tensor(s) have the wrong shape, first {k}: checkpoint "
                              f"{tuple(sd[k].shape)} vs config {tuple(own[k].shape)}; check features_variant, "
                              "embed_dim_div, window_size, ff_ratio, kernel_size")
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.eval()
