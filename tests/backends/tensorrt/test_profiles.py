"""Shape profiles: derivation from token ranges, profile files, bad input -> clear errors."""
import json
from dataclasses import replace

import numpy as np
import pytest

from span_deploy.config import load_config
from span_deploy.backends.tensorrt.profiles import (Profile, ProfileError, TokenRange, build_profile, check_fits,
                                         derive_rows, downsample_growth, read_profile_file, resolve_tokens)
from span_deploy.rulebook import build_rulebook, input_names
from tests.cases import PUBLIC

FIX = str(PUBLIC)


@pytest.fixture(scope="module")
def cfg():
    return load_config(f"{FIX}/cls_tiny_alltoall/config.yaml")  # long, 3 stages, k2 s2, window 3


def test_rows_for_token_ranges(cfg):
    rows = derive_rows(cfg, TokenRange(10, 1000, 5000))
    assert rows["feats"] == (10, 1002, 5002)
    assert rows["s0_pos_u"] == (10, 1002, 5002)
    assert rows["s1_gather"] == (1, 251, 5002)       # k2 s2: growth 1, opt ~ n/4
    assert rows["s2_pos_s"] == (1, 63, 5002)
    assert rows["s0_win_u"] == (1, 56, 5002)          # ceil(2*1002/36)
    assert rows["s2_win_s"] == (1, 4, 5002)
    rows = derive_rows(cfg, TokenRange(1, 1, 1))
    assert rows["feats"] == (1, 3, 3)
    assert rows["s1_gather"] == (1, 1, 3)
    assert rows["s2_win_u"] == (1, 1, 3)
    assert set(rows) == set(input_names(cfg))


def test_growth_of_larger_kernels(cfg):
    assert downsample_growth(cfg) == 1
    assert downsample_growth(replace(cfg, kernel_size=3, stride=2)) == 4
    assert downsample_growth(replace(cfg, kernel_size=3, stride=1)) == 9
    assert downsample_growth(replace(cfg, conv_type="patchmerge")) == 1
    big = replace(cfg, kernel_size=3, stride=2)
    assert derive_rows(big, TokenRange(1, 10, 100))["s1_pos_u"][2] == 102 * 4


@pytest.mark.parametrize("n", [1, 7, 50, 400])
def test_real_slides_fit_their_profile(cfg, n):
    rng = np.random.default_rng(n)
    cells = rng.choice(60 * 60, size=n, replace=False)
    coords = np.stack([cells // 60, cells % 60], 1) * 224
    inputs = build_rulebook(coords, cfg).engine_inputs(cfg, np.zeros((n, cfg.feat_dim), np.float32))
    prof = build_profile(cfg, TokenRange(n, n, n))
    mins = {k: v[0] for k, v in prof.shapes.items()}
    maxs = {k: v[2] for k, v in prof.shapes.items()}
    check_fits(maxs, {k: v.shape for k, v in inputs.items()}, n, mins)  # no error
    assert prof.max_tokens == n


def test_static_dims_from_graph_and_max_tokens(cfg):
    graph = {n: [None, 36] if "win" in n else [None, 4] if "gather" in n else [None] for n in input_names(cfg)}
    graph["feats"] = [None, 512]
    prof = build_profile(cfg, TokenRange(5, 100, 2000), graph)
    assert prof.shapes["feats"] == ((5, 512), (102, 512), (2002, 512))
    assert prof.shapes["s1_gather"][2] == (2002, 4)
    assert prof.shapes["s0_pos_u"][1] == (102,)
    assert prof.max_tokens == 2000
    graph["s0_win_u"] = [None, None]
    with pytest.raises(ProfileError, match="dynamic dims beyond axis 0"):
        build_profile(cfg, TokenRange(5, 100, 2000), graph)


@pytest.mark.parametrize("args, msg", [((0, 1, 2), "positive"), ((5, 3, 10), "min <= opt <= max"),
                                       ((1, 20, 10), "min <= opt <= max"), ((1.5, 2, 3), "positive")])
def test_bad_ranges(args, msg):
    with pytest.raises(ProfileError, match=msg):
        TokenRange(*args)


def test_resolve_tokens_defaults():
    assert resolve_tokens(None, None, None) == TokenRange(1, 20000, 200000)
    assert resolve_tokens(None, None, 5000) == TokenRange(1, 5000, 5000)
    assert resolve_tokens(30000, None, None) == TokenRange(30000, 30000, 200000)
    with pytest.raises(ProfileError, match="larger than --max-tokens"):
        resolve_tokens(10, None, 5)
    with pytest.raises(ProfileError, match="min <= opt <= max"):
        resolve_tokens(1, 50, 10)


def test_profile_file_yaml_and_json(cfg, tmp_path):
    y = tmp_path / "p.yaml"
    y.write_text("tokens: [1, 100, 1000]\nfeats: [2, 50, 3000]\ns0_win_u: [[1, 36], [4, 36], [99, 36]]\n")
    over, tokens = read_profile_file(y)
    assert tokens == TokenRange(1, 100, 1000)
    prof = build_profile(cfg, tokens, None, over)
    assert prof.shapes["feats"] == ((2, 512), (50, 512), (3000, 512))
    assert prof.shapes["s0_win_u"] == ((1, 36), (4, 36), (99, 36))
    assert prof.shapes["s0_pos_u"] == ((1,), (102,), (1002,))   # derived from tokens
    assert prof.max_tokens == 2998
    j = tmp_path / "p.json"
    full = {n: [1, 10, 100] for n in input_names(cfg)}
    j.write_text(json.dumps(full))
    over, tokens = read_profile_file(j)
    assert tokens is None
    prof = build_profile(cfg, None, None, over)
    assert prof.shapes["s1_gather"] == ((1, 4), (10, 4), (100, 4))
    assert prof.to_dict()["feats"] == [[1, 512], [10, 512], [100, 512]]


@pytest.mark.parametrize("text, msg", [
    ("feats: [1, 2, 3]\n", "no shape range for input 's0_win_u'"),
    ("tokens: [1, 2, 3]\nbogus: [1, 2, 3]\n", "unknown inputs \\['bogus'\\]"),
    ("tokens: [1, 2, 3]\nfeats: [5, 2, 3]\n", "min <= opt <= max"),
    ("tokens: [1, 2, 3]\nfeats: [[1, 500], [2, 512], [3, 512]]\n", "does not match the graph input"),
    ("tokens: [1, 2, 3]\nfeats: [1, 2]\n", "expected \\[min, opt, max\\]"),
    ("tokens: [3, 2, 1]\n", "min <= opt <= max"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_bad_profile_files(cfg, tmp_path, text, msg):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(ProfileError, match=msg):
        over, tokens = read_profile_file(p)
        build_profile(cfg, tokens, None, over)


def test_missing_profile_file(tmp_path):
    with pytest.raises(ProfileError, match="profile file not found"):
        read_profile_file(tmp_path / "nope.yaml")


def test_check_fits_messages():
    mx = {"feats": (102, 8), "s0_win_u": (102, 36)}
    mn = {"feats": (3, 8), "s0_win_u": (1, 36)}
    check_fits(mx, {"feats": (50, 8), "s0_win_u": (9, 36)}, 48, mn)
    with pytest.raises(ProfileError, match=r"150 patches; input feats needs shape \[152, 8\].*at most \[102, 8\]"
                                           r".*max tokens ~ 100.*--max-tokens"):
        check_fits(mx, {"feats": (152, 8), "s0_win_u": (9, 36)}, 150, mn)
    with pytest.raises(ProfileError, match="below the engine's profile minimum.*--min-tokens"):
        check_fits(mx, {"feats": (2, 8), "s0_win_u": (1, 36)}, 2, mn)
    assert Profile({"feats": ((1, 8), (5, 8), (102, 8))}).max_tokens == 100


def test_segmentation_profile_sizes_decoder_tables_like_their_stage():
    """The upsampling tables of decoder block i have stage t = E-2-i's rows: same range as s{t}_pos_u;
    a real segmentation slide fits the derived profile."""
    from tests.cases import SEG_PUBLIC
    from span_deploy.features import read_features
    case = SEG_PUBLIC / "seg_default"
    scfg = load_config(case / "config.yaml")
    p = build_profile(scfg, TokenRange(1, 300, 1000))
    for i in range(scfg.num_decoder_stages):
        t = scfg.decoder_target_stage(i)
        for k in ("parent", "slot"):
            assert [s[0] for s in p.shapes[f"d{i}_{k}"]] == [s[0] for s in p.shapes[f"s{t}_pos_u"]]
    sf = read_features(case / "slide.h5")
    inputs = build_rulebook(sf.coords, scfg).engine_inputs(scfg, sf.feats)
    check_fits({n: v[2] for n, v in p.shapes.items()}, {n: a.shape for n, a in inputs.items()}, len(sf.coords),
               {n: v[0] for n, v in p.shapes.items()})
