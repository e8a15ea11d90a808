"""Export a patch encoder with the user's weights to ONNX (torch is imported lazily here).

Input contract of every exported encoder (chosen so the runtime does no preprocessing):
``tiles``: uint8 NHWC (B, 224, 224, 3) RGB, batch dynamic -- exactly what the slide reader
produces. The graph casts to float, scales to [0, 1], applies ImageNet mean/std and transposes
to NCHW, so normalisation cannot be forgotten or done twice, and a CUDA host->device copy moves
4x fewer bytes than float32. Output: ``features`` float32 (B, F).
Metadata (ONNX ``metadata_props``): span_deploy.encoder = arch, feature_dim, input_format,
mean, std, weights_sha256.

Weights are loaded safely: ``.safetensors`` via safetensors, anything else with
``torch.load(weights_only=True)`` (no arbitrary pickle code runs).

    python -m span_export.encoders.export --arch resnet50_trunc --weights r50.pth --out r50.onnx
"""
from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

from span_deploy.encoders.contract import (IMAGENET_MEAN, IMAGENET_STD, INPUT_FORMAT, INPUT_NAME,
                                          METADATA_ARCH, OUTPUT_NAME)
from span_deploy.errors import CheckpointError
from span_deploy.outputs.atomic import atomic_path

ARCHS = ("resnet50_trunc", "vit")
ALLOWED_UNUSED = {"resnet50_trunc": ("layer4.", "fc."), "vit": ("head.",)}


def load_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """A flat {name: tensor} from .safetensors or a torch checkpoint (weights_only)."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"encoder weights not found: {path}. Pass the .pth/.bin/.safetensors file.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd: Any = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:     # pickle with code, truncated zip, wrong format ...
        raise CheckpointError(f"cannot load encoder weights safely from {path} ({type(e).__name__}: "
                              f"{str(e)[:300]}). Save a plain state_dict (torch.save(model.state_dict()) "
                              "or safetensors).") from e
    for key in ("state_dict", "model", "model_state_dict", "teacher"):   # common wrappers
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(hasattr(v, "shape") for v in sd.values()):
        raise CheckpointError(f"{path} does not hold a state_dict of tensors.")
    return {k.removeprefix("module.").removeprefix("model."): v for k, v in sd.items()}


def build_encoder(arch: str, state_dict: dict[str, Any] | None = None, num_heads: int | None = None):
    """The torch module for ``arch``; with a state_dict, loaded strictly (unused heads allowed)."""
    if arch == "resnet50_trunc":
        from .resnet50_trunc import ResNet50Trunc
        model = ResNet50Trunc()
    elif arch == "vit":
        from .vit import UNI, VisionTransformer, vit_config_from_state_dict
        cfg = vit_config_from_state_dict(state_dict, num_heads) if state_dict else UNI
        model = VisionTransformer(cfg)
    else:
        raise CheckpointError(f"unknown encoder arch {arch!r}; choose one of {', '.join(ARCHS)}.")
    if state_dict is not None:
        res = model.load_state_dict(state_dict, strict=False)
        unexpected = [k for k in res.unexpected_keys if not k.startswith(ALLOWED_UNUSED[arch])]
        if res.missing_keys or unexpected:
            raise CheckpointError(
                f"weights do not match {arch}: missing {res.missing_keys[:5]} "
                f"({len(res.missing_keys)}), unexpected {unexpected[:5]} ({len(unexpected)}). "
                "Expected torchvision (ResNet-50) or timm (ViT) parameter names.")
    return model.eval()


def _wrapped(model):
    import torch

    class UInt8NHWC(torch.nn.Module):
        """uint8 NHWC RGB -> ImageNet-normalised float NCHW -> encoder."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.register_buffer("scale", (1.0 / (255.0 * torch.tensor(IMAGENET_STD))).view(1, 3, 1, 1))
            self.register_buffer("shift", (torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1))

        def forward(self, tiles):
            x = tiles.permute(0, 3, 1, 2).to(torch.float32)
            return self.inner(x * self.scale - self.shift)

    return UInt8NHWC(model).eval()


def export_module(model, out_path: str | os.PathLike, arch: str, weights_sha256: str = "",
                  opset: int = 18) -> Path:
    """Export an already-built encoder module (float NCHW in) behind the uint8 NHWC wrapper."""
    import onnx
    import torch
    wrapped = _wrapped(model)
    example = torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8)
    with torch.no_grad():
        feature_dim = int(wrapped(example).shape[1])
    with atomic_path(out_path) as tmp, torch.no_grad():
        torch.onnx.export(wrapped, (example,), str(tmp), dynamo=True, external_data=False,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                          dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        m = onnx.load(str(tmp))
        meta = {METADATA_ARCH: arch, "feature_dim": str(feature_dim),
                "input_format": INPUT_FORMAT, "mean": ",".join(map(str, IMAGENET_MEAN)),
                "std": ",".join(map(str, IMAGENET_STD)), "weights_sha256": weights_sha256}
        del m.metadata_props[:]
        for k, v in meta.items():
            m.metadata_props.add(key=k, value=v)
        onnx.save(m, str(tmp))
    return Path(out_path)


def export_encoder(arch: str, weights: str | os.PathLike, out_path: str | os.PathLike,
                   num_heads: int | None = None) -> Path:
    """Load ``weights`` safely into ``arch`` and export it to ``out_path`` (ONNX)."""
    sd = load_state_dict(weights)
    model = build_encoder(arch, sd, num_heads)
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    return export_module(model, out_path, arch, digest)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=ARCHS, required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--num-heads", type=int, default=None, help="ViT heads (default embed_dim/64)")
    a = ap.parse_args(argv)
    print(export_encoder(a.arch, a.weights, a.out, a.num_heads))


if __name__ == "__main__":
    main()
