#!/usr/bin/env bash
# Stage, HERE (the development machine), what tools/gpu_check.sh needs on a lent GPU machine that
# cannot reach ../shared, the git mirror or a package index: an ignored folder inside the repo,
# named in the device call's `carry`. Nothing staged is ever committed (the folder is added to
# .git/info/exclude; the official code must not enter this repository).
#
#   bash tools/gpu_stage.sh            # -> .gpu-carry/, then prints the device `run` call
#   bash tools/gpu_stage.sh --park     # move the large tracked test fixtures (tests/fixtures/extra,
#                                      # tests/fixtures/segmentation; no GPU step reads them) out of
#                                      # the tree, so what travels stays under the tool's 64 MiB
#   bash tools/gpu_stage.sh --unpark   # put them back (do this right after the device call)
#
# .gpu-carry/ holds:
#   official/     the official SPAN source (github wwyi1828/SPAN), extracted from the local git mirror
#                 as ../shared/tools/official/setup.sh extracts it (git archive HEAD; only src/ tasks/
#                 lib/ configs/ LICENSE); official/.span_commit names the commit. setup.sh patches
#                 nothing in the source itself (its two edits are to DGL / torchvision inside its venv,
#                 and neither is used here: DGL is replaced by the stand-in below).
#   dglshim/      ../shared/tools/dglshim, the pure-PyTorch DGL stand-in (real DGL has no build for
#                 the GPU machine's torch 2.11 / Python 3.12, and nothing can be installed there)
#   site/         pure-Python packages the official code imports that the GPU image lacks
#                 (omegaconf + antlr4 runtime), copied from a local Python that has them (the
#                 official venv of setup.sh), for a whole-model check against the official code (not in the repository yet)
#   ort-headers/  build/ort-headers/include, if present: the ONNX Runtime headers for gpu_check.sh's
#                 CUDA-EP step (only used where onnxruntime has the CUDA EP, i.e. not normally)
#
# Env: SPAN_GPU_CARRY (default <repo>/.gpu-carry; only a top-level folder of the repo travels;
#      elsewhere, e.g. a test's temporary folder, it serves local dry runs only),
#      SPAN_MIRROR (default <repo>/../.mirror/wwyi1828+SPAN/repo), SPAN_DGLSHIM (default
#      <repo>/../shared/tools/dglshim), SPAN_OFFICIAL_VENV (default /tmp/span-official-venv).
# Exit 0 when the official source and the stand-in are staged; 1 otherwise (one error line).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${SPAN_GPU_CARRY:-$repo/.gpu-carry}
[[ $dest = /* ]] || dest=$repo/$dest
mirror=${SPAN_MIRROR:-$repo/../.mirror/wwyi1828+SPAN/repo}
shim=${SPAN_DGLSHIM:-$repo/../shared/tools/dglshim}
venv=${SPAN_OFFICIAL_VENV:-/tmp/span-official-venv}
expected_commit=08e4ba08900f151d6b618d5e13595a1ab2f12164   # the commit the shared fixtures were made at

die() { echo "gpu_stage: error: $*" >&2; exit 1; }
say() { echo "gpu_stage: $*"; }

# --- parking the large fixtures: the device tool sends every file of the tree -------------------------
parked=${SPAN_PARKED_FIXTURES:-${TMPDIR:-/tmp}/span-parked-fixtures}
case ${1:-} in
--park)
    mkdir -p "$parked"
    for d in extra segmentation; do
        [[ -d $repo/tests/fixtures/$d ]] || continue
        [[ ! -e $parked/$d ]] || die "$parked/$d exists already: run --unpark first"
        mv "$repo/tests/fixtures/$d" "$parked/$d"
        say "parked tests/fixtures/$d in $parked/$d (git status shows it deleted until --unpark)"
    done
    exit 0 ;;
--unpark)
    for d in extra segmentation; do
        [[ -d $parked/$d ]] || continue
        [[ ! -e $repo/tests/fixtures/$d ]] || die "tests/fixtures/$d exists: not overwriting it"
        mv "$parked/$d" "$repo/tests/fixtures/$d"
        say "restored tests/fixtures/$d"
    done
    exit 0 ;;
"") ;;
*) die "unknown argument '$1' (none, --park or --unpark)" ;;
esac

inside=1
case $dest/ in
"$repo"/?*) rel=${dest#"$repo"/}
    [[ $rel != */* ]] || die "SPAN_GPU_CARRY must be a top-level folder of the repo (got $rel)" ;;
*) inside=0 rel=$dest   # e.g. a test's temporary folder: usable here, but it does not travel
    echo "gpu_stage: warning: $dest is outside the repository: fine for a local dry run, it will not travel" >&2 ;;
esac

# --- the folder never enters git: .git/info/exclude (.git may be a worktree's 'gitdir:' file) --------
gitdir=$repo/.git
if [[ -f $gitdir ]]; then
    gitdir=$(sed -n 's/^gitdir: *//p' "$gitdir")
    [[ $gitdir = /* ]] || gitdir=$repo/$gitdir
fi
if ((!inside)); then
    :
elif [[ -d $gitdir ]]; then
    mkdir -p "$gitdir/info"
    grep -qxF "/$rel/" "$gitdir/info/exclude" 2>/dev/null || echo "/$rel/" >>"$gitdir/info/exclude"
else
    echo "gpu_stage: warning: no .git folder at $repo: add /$rel/ to your ignore rules yourself" >&2
fi

# --- official source ----------------------------------------------------------------------------------
[[ -d $mirror ]] || die "no SPAN mirror at $mirror: fetch github:wwyi1828/SPAN first (or set SPAN_MIRROR)"
commit=$(git --git-dir="$mirror" rev-parse HEAD 2>/dev/null) || die "$mirror is not a git directory"
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "$dest.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/official"
git --git-dir="$mirror" archive HEAD src tasks lib configs LICENSE | tar -x -C "$tmp/official" ||
    die "git archive from $mirror failed"
echo "$commit" >"$tmp/official/.span_commit"
[[ -f $tmp/official/src/span/model.py ]] || die "$mirror HEAD has no src/span/model.py"
[[ $commit = "$expected_commit" ]] ||
    echo "gpu_stage: warning: mirror HEAD is $commit, the fixtures were made at $expected_commit" >&2

# --- DGL stand-in -------------------------------------------------------------------------------------
[[ -f $shim/dgl/__init__.py ]] || die "no DGL stand-in at $shim (set SPAN_DGLSHIM)"
mkdir -p "$tmp/dglshim"
cp -r "$shim/dgl" "$tmp/dglshim/"
find "$tmp/dglshim" -name __pycache__ -type d -prune -exec rm -rf {} +

# --- pure-Python packages missing from the GPU image (omegaconf needs antlr4) -------------------------
site_note="omegaconf not staged (no local Python has omegaconf + antlr4): the model check uses its stand-in"
for py in "$venv/bin/python" python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    dirs=$("$py" - <<'EOF' 2>/dev/null
import os, omegaconf, antlr4
for m in (omegaconf, antlr4):
    d = os.path.dirname(m.__file__)
    # pure Python only: the GPU machine runs Python 3.12, the venv here another version
    if any(f.endswith((".so", ".pyd")) for _, _, fs in os.walk(d) for f in fs):
        raise SystemExit(1)
    print(d)
print(omegaconf.__version__)
EOF
) || continue
    mkdir -p "$tmp/site"
    ver=$(tail -n1 <<<"$dirs")
    while read -r d; do cp -r "$d" "$tmp/site/"; done < <(sed '$d' <<<"$dirs")
    find "$tmp/site" -name __pycache__ -type d -prune -exec rm -rf {} +
    site_note="site: omegaconf $ver + antlr4 (pure Python, from $py)"
    break
done

# --- ONNX Runtime headers (for the CUDA-EP step, if that ever applies) --------------------------------
if [[ -f $repo/build/ort-headers/include/onnxruntime_cxx_api.h ]]; then
    mkdir -p "$tmp/ort-headers"
    cp -r "$repo/build/ort-headers/include" "$tmp/ort-headers/"
fi

rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
chmod -R u+w,a+rX "$dest"
say "staged $(du -sh "$dest" | cut -f1) in $dest: official SPAN ${commit:0:12}, dglshim"
say "$site_note"
[[ -d $dest/ort-headers ]] && say "ort-headers: from build/ort-headers" ||
    say "ort-headers: none (run tools/install_ort_headers.sh first if the CUDA-EP step should build)"

# --- the device call ----------------------------------------------------------------------------------
((inside)) || exit 0
tree_kib=$(cd "$repo" && du -s --apparent-size -k --exclude=.git --exclude=.venv --exclude=build \
    --exclude=__pycache__ --exclude='*.egg-info' --exclude=.pytest_cache --exclude=.hypothesis \
    --exclude=.mypy_cache . | cut -f1)
if ((tree_kib > 60 * 1024)); then
    echo "gpu_stage: warning: about $((tree_kib / 1024)) MiB would travel (files not ignored + $rel);" \
        "the device tool refuses more than 64 MiB: tracked test fixtures count too;" \
        "bash tools/gpu_stage.sh --park moves the large ones aside (--unpark after the call)" >&2
fi
cat <<EOF

Device call (tool 'run'; the script ends in < 6 min, so a rerun fits in the 15-minute budget):
  carry:     ["$rel"]
  timeout_s: 420
  command:   SPAN_GPU_CARRY=$rel PYTHONUNBUFFERED=1 bash tools/gpu_check.sh
Results come back under files_at: summary.txt, summary.json, kernel.json, model.json, gpu_check.log
EOF
