"""Safe checkpoint loading: no pickled code runs; wrappers and prefixes are undone; keys checked."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from span_deploy.config import SpanConfig
from span_deploy.errors import CheckpointError

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "module", "net", "weights")
PREFIXES = ("module.", "model.", "_orig_mod.", "net.")

# Key fragments -> the config knob that most likely explains a mismatch.
HINTS = (
    ("table_RPB", "model.pos_emb (rpb has table_RPB; alibi has pos_encoder.slopes; rope/none have neither)"),
    ("pos_encoder.slopes", "model.pos_emb (alibi)"),
    ("identity_proj", "model.global_strategy (identity has identity_proj, proj has g_proj, kernel neither)"),
    ("g_proj", "model.global_strategy"),
    ("global_input_norm", "model.conv_norm_position (pre has input_norm/global_input_norm, post has output_norm)"),
    ("input_norm", "model.conv_norm_position"),
    ("output_norm", "model.conv_norm_position"),
    ("pwconv", "model.econvs_type (patchmerge has pwconv, the convs have dwconv)"),
    ("dwconv", "model.econvs_type"),
    ("prenorm", "model.input_projection.prenorm"),
    ("linear.", "model.input_projection (activation / drop_first / bias)"),
    ("learnable_tokens", "model.token_init_types"),
    ("fixed_tokens", "model.token_init_types"),
    ("random_tokens", "model.token_init_types"),
    ("aggregator", "classification.aggr_method / survival.aggregation or head_norm"),
    ("classifier_1", "task (survival heads)"),
    ("trans_2.", "model.slide_configs (layers per stage)"),
    ("blocks.", "model.slide_configs (number of stages)"),
    ("upconv", "model.dconvs_type (patchinvs / dwpatchinvs have upconv, pixelshuffle has conv)"),
    ("conv_block.conv.", "model.dconvs_type"),
    ("convs_2", "model.skip_first / model.connection (they decide the decoder's module positions)"),
    ("convs_1", "model.skip_first / model.connection"),
    ("trans_4", "model.skip_first / model.connection"),
    ("trans_3", "model.skip_first / model.connection"),
)


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Tensors only: torch.load(weights_only=True) or safetensors; wrappers and prefixes removed."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
            obj: Any = load_file(str(p))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{p}: not a readable safetensors file ({e})") from None
    else:
        head = p.read_bytes()[:4] if p.stat().st_size else b""
        # torch.save writes a zip ("PK\x03\x04"); legacy files start with a pickle protocol byte
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
            what = "empty file" if not head else "neither a torch.save zip nor a pickle"
            raise CheckpointError(f"{p}: not a PyTorch checkpoint ({what}); pass the .pt / .pth / "
                                  ".safetensors file the model was trained with")
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - pickle errors come in many types
            msg = str(e).splitlines()[0][:300]
            raise CheckpointError(
                f"{p}: refused to load: only tensors and plain containers are accepted "
                f"(torch.load weights_only=True), so no pickled code is executed. Re-save the "
                f"state_dict with torch.save(model.state_dict(), ...) or as .safetensors. ({msg})") from None
    return unwrap(obj, str(p))


def unwrap(obj: Any, where: str) -> dict[str, Any]:
    import torch

    for _ in range(4):  # nested wrappers, e.g. {"state_dict": {"model": sd}}
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            for k in WRAPPER_KEYS:
                if isinstance(obj.get(k), dict):
                    obj = obj[k]
                    break
            else:
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{where}: no state_dict found (expected a dict of tensors, possibly under "
                              f"one of {WRAPPER_KEYS})")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(f"{where}: the checkpoint holds no tensors")
    changed = True
    while changed:
        changed = False
        for pre in PREFIXES:
            if all(k.startswith(pre) for k in sd):
                sd = {k[len(pre):]: v for k, v in sd.items()}
                changed = True
    return sd


def infer_num_outputs(cfg: SpanConfig, sd: dict[str, Any], where: str) -> int:
    """Rows of the head's final Linear: the class count (or survival bins); segmentation: 1."""
    if cfg.task == "segmentation":
        key = f"decoder.blocks.{cfg.num_decoder_stages}.modules_dict.convs_0.0.conv_block.linear.1.weight"
        if key not in sd:
            raise CheckpointError(f"{where}: the config's segmentation decoder ({cfg.num_decoder_stages} stages) "
                                  f"needs '{key}', which the checkpoint lacks; check model.slide_configs")
        return int(sd[key].shape[0])
    if cfg.task == "survival":
        key = {"addition": "aggregator.fc.weight", "concat": "classifier_1.1.weight"}.get(
            cfg.aggr_method, "multi_aggregator.fc.1.weight")
    else:
        key = {"multi_addition": "aggregator.module.fc.1.weight", "multiattn": "aggregator.fc.weight",
               "concat": "aggregator.module.2.weight", "addition": "aggregator.module.2.weight"}.get(
            cfg.aggr_method, "aggregator.module.1.weight")
    if key not in sd:
        heads = sorted({k.rsplit(".", 1)[0] for k in sd if not k.startswith("encoder.")})
        raise CheckpointError(f"{where}: the config's head ({cfg.task} / {cfg.aggr_method}) needs '{key}', "
                              f"which the checkpoint lacks; its head keys are {heads[:8]}. Check "
                              "classification.aggr_method / survival.aggregation")
    return int(sd[key].shape[0])


def infer_feat_dim(sd: dict[str, Any]) -> int | None:
    for k in ("encoder.learnable_tokens.0", "encoder.fixed_tokens", "encoder.random_tokens"):
        if k in sd:
            return int(sd[k].shape[-1])
    w = sd.get("encoder.blocks.0.modules_dict.convs_0.0.conv_block.linear.0.weight")
    if w is None:
        w = sd.get("encoder.blocks.0.modules_dict.convs_0.0.conv_block.linear.1.weight")
    return int(w.shape[1]) if w is not None else None


def key_mismatch_message(missing: list[str], unexpected: list[str], where: str) -> str:
    def hint(keys: list[str]) -> set[str]:
        out = set()
        for k in keys:
            for frag, knob in HINTS:
                if frag in k:
                    out.add(knob)
                    break
        return out

    lines = [f"{where}: the checkpoint does not match the config"]
    if missing:
        lines.append(f"  missing ({len(missing)}): " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(unexpected[:8])
                     + (" ..." if len(unexpected) > 8 else ""))
    knobs = sorted(hint(missing) | hint(unexpected))
    if knobs:
        lines.append("  most likely explained by: " + "; ".join(knobs))
    return "\n".join(lines)
