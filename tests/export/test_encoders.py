"""Encoder export -> ONNX Runtime equals torch; safe weight loading; no torch in the runtime."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from span_export.encoders.export import _wrapped, export_encoder, export_module  # noqa: E402
from span_deploy.errors import CheckpointError  # noqa: E402


def _randomise(m):
    """Random weights everywhere, including norms and BN running stats (not just init)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.ndim == 1 else p.std().clamp(min=0.02)))
        for name, b in m.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
    return m.eval()


def _tiles(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)


def _torch_out(m, x):
    with torch.no_grad():
        return _wrapped(m)(torch.from_numpy(x)).numpy()


def test_tiny_vit_onnx_matches_torch(tmp_path):
    from span_deploy.encoders.runner import OnnxEncoder
    from span_export.encoders.vit import TINY, VisionTransformer
    m = _randomise(VisionTransformer(TINY))
    p = export_module(m, tmp_path / "vit.onnx", "vit")
    enc = OnnxEncoder(p)
    assert enc.feature_dim == 64 and enc.name == "vit"
    for n in (1, 5):                                     # dynamic batch
        x = _tiles(n, n)
        np.testing.assert_allclose(enc(x), _torch_out(m, x), rtol=1e-4, atol=1e-4)


def test_resnet50_trunc_onnx_matches_torch(tmp_path):
    from span_export.encoders.resnet50_trunc import ResNet50Trunc
    from span_deploy.encoders.runner import OnnxEncoder
    m = _randomise(ResNet50Trunc())
    sd = {k: v for k, v in m.state_dict().items()}
    sd["fc.weight"] = torch.zeros(1000, 2048)            # a full torchvision checkpoint has these
    sd["layer4.0.conv1.weight"] = torch.zeros(512, 1024, 1, 1)
    torch.save({"state_dict": sd}, tmp_path / "r50.pth")
    p = export_encoder("resnet50_trunc", tmp_path / "r50.pth", tmp_path / "r50.onnx")
    enc = OnnxEncoder(p)
    assert enc.feature_dim == 1024
    x = _tiles(2)
    out, ref = enc(x), _torch_out(m, x)
    assert out.shape == (2, 1024) and np.abs(ref).max() > 1e-3
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


def test_safetensors_vit_config_inferred(tmp_path):
    from safetensors.torch import save_file

    from span_deploy.encoders.runner import OnnxEncoder
    from span_export.encoders.vit import ViTConfig, VisionTransformer
    cfg = ViTConfig(embed_dim=128, depth=1, num_heads=2, layer_scale=True)
    m = _randomise(VisionTransformer(cfg))
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "w.safetensors"))
    p = export_encoder("vit", tmp_path / "w.safetensors", tmp_path / "v.onnx", num_heads=2)
    x = _tiles(2)
    np.testing.assert_allclose(OnnxEncoder(p)(x), _torch_out(m, x), rtol=1e-4, atol=1e-4)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_unsafe_or_wrong_weights_refused(tmp_path):
    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="safely"):
        export_encoder("resnet50_trunc", tmp_path / "evil.pth", tmp_path / "e.onnx")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="missing"):
        export_encoder("resnet50_trunc", tmp_path / "partial.pth", tmp_path / "e.onnx")
    assert not (tmp_path / "e.onnx").exists()
