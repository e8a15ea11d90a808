"""The one door to the export side: the torch reference backend, export, on-the-fly export."""
from __future__ import annotations

import numpy as np
import pytest

from span_deploy.backends import Backend, open_backend
from span_deploy.backends.torch import cache_dir, export_cached
from span_deploy.features import read_features
from tests.cases import PUBLIC, ops_library_or_skip

TINY = PUBLIC / "cls_tiny_alltoall"


def test_every_backend_follows_the_protocol():
    ops_library_or_skip()
    ckpt, cfg = TINY / "checkpoint.pt", TINY / "config.yaml"
    sf = read_features(TINY / "slide.h5")
    expected = np.load(TINY / "expected.npz")["logits"].reshape(-1)
    for name in ("torch", "ort", "ort-portable"):
        be = open_backend(name, checkpoint=ckpt, config=cfg)
        assert isinstance(be, Backend), name
        assert be.name == name and be.feat_dim == be.cfg.feat_dim == sf.feats.shape[1]
        assert be.max_tokens is None
        r = be.run(sf.coords, sf.feats)
        np.testing.assert_allclose(r.logits, expected, rtol=0, atol=1e-4)


def test_export_cached_exports_once():
    a = export_cached(TINY / "checkpoint.pt", TINY / "config.yaml", "portable")
    assert a.parent == cache_dir() and a.is_file()
    stamp = a.stat().st_mtime_ns
    b = export_cached(TINY / "checkpoint.pt", TINY / "config.yaml", "portable")
    assert b == a and b.stat().st_mtime_ns == stamp
    assert export_cached(TINY / "checkpoint.pt", TINY / "config.yaml", "plugin") != a


def test_open_backend_picks_the_backend_from_the_model():
    model = export_cached(TINY / "checkpoint.pt", TINY / "config.yaml", "portable")
    assert open_backend(model=model).name == "ort-portable"
    assert open_backend(str(model)).name == "ort-portable"
    from span_deploy.errors import BackendError
    with pytest.raises(BackendError, match="is a portable export; use --backend ort-portable"):
        open_backend("ort", model=model)
