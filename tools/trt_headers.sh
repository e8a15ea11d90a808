# Sourced by tools/check_trt_plugin.sh and tools/check_cpp_trt.sh: what both do per TensorRT header
# tree. Needs $cxx (a C++ compiler) and $root (the folder for the per-version build dirs).

# "MAJOR.MINOR.PATCH" of a header tree: the preprocessor expands NvInferVersion.h's macros, which
# newer headers define through other macros (TRT_MAJOR_ENTERPRISE, ...).
trt_version() {
    local v major minor patch
    v=$(printf '#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR NV_TENSORRT_MINOR NV_TENSORRT_PATCH\n' |
        "$cxx" -E -P -x c++ -I"$1" - 2>/dev/null | tail -n1) || return 1
    read -r major minor patch <<<"$v"
    [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ && $patch =~ ^[0-9]+$ ]] || return 1
    echo "$major.$minor.$patch"
}

# for_each_trt_include NAME CHECK INCLUDE_DIR...: for each header tree, `CHECK INC VERSION BUILD_DIR`
# with its output in BUILD_DIR/check.log, and one "NAME: PASS|FAIL TensorRT VERSION (INC)" line (the
# log's tail on failure). Returns 1 when any tree fails.
for_each_trt_include() {
    local name=$1 check=$2 failed=0 inc abs version build log
    shift 2
    for inc in "$@"; do
        abs=$(cd "$inc" 2>/dev/null && pwd) || { echo "$name: FAIL $inc: no such directory"; failed=1; continue; }
        inc=$abs
        if [[ ! -f $inc/NvInferRuntime.h ]] || ! version=$(trt_version "$inc"); then
            echo "$name: FAIL $inc: no NvInferRuntime.h / readable NvInferVersion.h"
            failed=1
            continue
        fi
        build=$root/trt-$version
        log=$build/check.log
        mkdir -p "$build"
        if "$check" "$inc" "$version" "$build" >"$log" 2>&1; then
            echo "$name: PASS TensorRT $version ($inc)"
        else
            echo "$name: FAIL TensorRT $version ($inc); last lines of $log:"
            tail -n 25 "$log" | sed 's/^/    /'
            failed=1
        fi
    done
    return "$failed"
}
