#!/usr/bin/env bash
# Fetch the ONNX Runtime C/C++ headers (Debian trixie's libonnxruntime-dev, ORT 1.21) into
# build/ort-headers/include without touching the system: the trixie source list, apt lists and
# cache all live in a temp dir that is removed on exit, and the .deb is only unpacked (dpkg -x).
# The mirror is taken from this machine's own apt configuration, so no host is written here: a
# Debian archive source (URI ending in /debian; on a Debian machine its first main source). This
# works only on Debian-like machines with apt-get, dpkg, the Debian archive keyring and such a
# mirror; elsewhere (e.g. JetPack's Ubuntu, whose mirrors carry no trixie) it stops at once with
# one error line, before any download. tools/build_native.sh then builds without the ORT op.
#
# Usage: bash tools/install_ort_headers.sh [DEST]   (DEST defaults to <repo>/build/ort-headers)
# Elsewhere, unpack an ONNX Runtime release's include/ and pass its path as ORT_INCLUDE_DIR
# (tools/build_native.sh) or -DORT_INCLUDE_DIR (CMake).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${1:-$repo/build/ort-headers}
suite=trixie
pkg=libonnxruntime-dev

if [[ -f $dest/include/onnxruntime_cxx_api.h ]]; then
    echo "ORT headers already present: $dest/include"
    exit 0
fi

die() { echo "install_ort_headers: error: $*" >&2; exit 1; }
command -v apt-get >/dev/null || die "apt-get not found (not a Debian/Ubuntu machine)"
command -v dpkg >/dev/null || die "dpkg not found"

# First main-archive mirror URI (not *-security) from deb822 .sources files, then sources.list.
mirror_uri() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        # Each deb822 stanza is a paragraph; keep URIs of stanzas whose suites are not security ones.
        awk 'BEGIN{RS=""; FS="\n"}
             { uris=""; sec=0
               for (i=1;i<=NF;i++) {
                 if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i); uris=$i }
                 if ($i ~ /^Suites:/ && $i ~ /-security/) sec=1 }
               if (uris != "" && !sec) { split(uris, u, /[ \t]+/); print u[1] } }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        awk '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                         if ($(i+1) !~ /-security/) print $i }' "$f"
    done
}
uris=$(mirror_uri | grep -E '^(https?|file)://' | grep -iv security || true)
# A Debian archive by its path; on Debian itself the first main source is one whatever its path.
uri=$(grep -E '/debian/?$' <<<"$uris" | head -n1 || true)
os_id=$( (. /etc/os-release 2>/dev/null && echo "${ID:-}") || true)
[[ -z $uri && $os_id == debian ]] && uri=$(head -n1 <<<"$uris")
[[ -n $uri ]] || die "no Debian mirror in the apt config (/etc/apt/sources.list{,.d/})"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -r $keyring ]] || die "$keyring missing (package debian-archive-keyring; it verifies the $suite index)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/etc/preferences.d" "$tmp/deb"
cat >"$tmp/etc/trixie.sources" <<EOF
Types: deb
URIs: $uri
Suites: $suite
Components: main
Signed-By: $keyring
EOF
# apt drops to the _apt user for downloads; the private temp dirs must be reachable by it.
chmod -R a+rwX "$tmp"

apt_opts=(
    -o "Dir::Etc::sourcelist=$tmp/etc/trixie.sources"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::Etc::preferencesparts=$tmp/etc/preferences.d"
    -o "Dir::State::lists=$tmp/lists"
    -o "Dir::Cache=$tmp/cache"
    -o "APT::Get::List-Cleanup=0"
    -o "Debug::NoLocking=1"
)
echo "Fetching $pkg from $suite via $uri ..."
apt-get "${apt_opts[@]}" -qq update || die "apt-get update of the temporary $suite source failed (network? mirror $uri)"
(cd "$tmp/deb" && apt-get "${apt_opts[@]}" -qq download "$pkg") || die "apt-get download $pkg failed"
deb=$(ls "$tmp"/deb/*.deb 2>/dev/null | head -n1)
[[ -n $deb ]] || die "no .deb downloaded for $pkg"

dpkg -x "$deb" "$tmp/x"
hdr=$(dirname "$(find "$tmp/x" -name onnxruntime_cxx_api.h | head -n1)")
[[ -f $hdr/onnxruntime_c_api.h ]] || die "$pkg ($deb) holds no onnxruntime_c_api.h"
mkdir -p "$dest"
rm -rf "$dest/include"
cp -r "$hdr" "$dest/include"
echo "$(basename "$deb")" >"$dest/SOURCE"
echo "ORT headers installed: $dest/include (from $(basename "$deb"))"
