"""The native code under AddressSanitizer + UndefinedBehaviorSanitizer (-fno-sanitize-recover=all:
any report aborts). tools/build_native.sh builds both instrumented artefacts when the compiler
can build and link -fsanitize=address,undefined (CMake option SPAN_SANITIZE_CHECK, default ON):

* build/bin/swa_sanitize_check (plugins/sparse_window_attention/kernels/tests/swa_sanitize_check.cpp):
  the CPU kernel, the table / parameter checks and the shape check on seeded random cases (valid
  tables and tables with out-of-range entries, float32 and float16, 1 and several threads, row
  sub-ranges) against a naive reference, on edge cases and on a wrong shape of every input;
* build/lib/sanitize/libspan_deploy_ops.so: the ORT custom op with the kernels, instrumented.
  tests/op/test_ort_custom_op.py (random and grid tables included) and tests/op/test_op_contract.py
  run against it in a child Python with the sanitizer runtimes in LD_PRELOAD (Linux only).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SPAN_BUILD_DIR", REPO / "build"))
CHECK = BUILD / "bin" / ("swa_sanitize_check.exe" if os.name == "nt" else "swa_sanitize_check")
SANITIZE_OPS_LIB = BUILD / "lib" / "sanitize" / "libspan_deploy_ops.so"
TIMEOUT_S = 300
# The op tests re-run against the instrumented library.
ORT_OP_TESTS = ("tests/op/test_ort_custom_op.py", "tests/op/test_op_contract.py")

# LeakSanitizer works in this environment (it needs to stop the process's threads with ptrace-like
# calls, which some sandboxes forbid; there, run with ASAN_OPTIONS=detect_leaks=0 in the
# environment: options given there are appended, so they win).
ASAN_OPTIONS = "detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1"
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1"


def _missing(what: str):
    # CI builds the native part first (tools/build_native.sh): there a missing binary is a failure.
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"CI is set but {what}")
    pytest.skip(what)


def _options(name: str, ours: str) -> str:
    extra = os.environ.get(name, "")
    return f"{ours}:{extra}" if extra else ours


def test_kernels_under_asan_and_ubsan():
    if not CHECK.is_file():
        _missing(f"{CHECK} is not built (bash tools/build_native.sh builds it when the C++ compiler supports "
                 "-fsanitize=address,undefined and SPAN_SANITIZE_CHECK is ON)")
    env = dict(os.environ, ASAN_OPTIONS=_options("ASAN_OPTIONS", ASAN_OPTIONS),
               UBSAN_OPTIONS=_options("UBSAN_OPTIONS", UBSAN_OPTIONS))
    t0 = time.monotonic()
    try:
        r = subprocess.run([str(CHECK)], capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{CHECK} did not finish within {TIMEOUT_S} s; stderr tail:\n{(e.stderr or b'')[-4000:]!r}")
    elapsed = time.monotonic() - t0
    report = f"exit code {r.returncode} after {elapsed:.1f} s\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-8000:]}"
    assert r.returncode == 0, report
    assert "runtime error" not in r.stderr, report  # UBSan
    assert "AddressSanitizer" not in r.stderr and "LeakSanitizer" not in r.stderr, report
    m = re.search(r"^swa_sanitize_check: (\d+) cases OK", r.stdout, re.MULTILINE)
    assert m, report
    assert int(m.group(1)) >= 300, report  # the random cases alone are 300


def _sanitizer_runtimes(lib: Path) -> list[str]:
    """The ASan / UBSan shared runtimes the instrumented library needs, ASan first (it must be the
    first library of the process, hence LD_PRELOAD: python itself is not instrumented)."""
    r = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, timeout=60)
    found = dict(re.findall(r"^\s*(lib(?:asan|ubsan)\.so[^\s]*)\s+=>\s+(\S+)", r.stdout, re.MULTILINE))
    return [path for name, path in sorted(found.items(), key=lambda kv: not kv[0].startswith("libasan"))]


def test_ort_op_tests_under_asan_and_ubsan(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("the instrumented ORT op is loaded with LD_PRELOAD (Linux only)")
    if not SANITIZE_OPS_LIB.is_file():
        _missing(f"{SANITIZE_OPS_LIB} is not built (bash tools/build_native.sh builds it with the ORT op when "
                 "the C++ compiler supports -fsanitize=address,undefined and SPAN_SANITIZE_CHECK is ON)")
    runtimes = _sanitizer_runtimes(SANITIZE_OPS_LIB)
    if not any("libasan" in p for p in runtimes):
        _missing(f"ldd finds no libasan for {SANITIZE_OPS_LIB} (found {runtimes})")
    preload = ":".join(runtimes + ([os.environ["LD_PRELOAD"]] if os.environ.get("LD_PRELOAD") else []))
    # detect_leaks=0: python and onnxruntime keep allocations alive until exit by design, so
    # LeakSanitizer would report them; leaks of the kernel code are checked by swa_sanitize_check.
    # log_path: reports go to files (pytest's output capture in the child would swallow them).
    env = dict(os.environ, SPAN_DEPLOY_OPS_LIB=str(SANITIZE_OPS_LIB), LD_PRELOAD=preload,
               ASAN_OPTIONS=_options("ASAN_OPTIONS", f"detect_leaks=0:halt_on_error=1:log_path={tmp_path}/asan"),
               UBSAN_OPTIONS=_options("UBSAN_OPTIONS", f"print_stacktrace=1:halt_on_error=1:log_path={tmp_path}/ubsan"))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ORT_OP_TESTS]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(cmd)} under ASan did not finish within {TIMEOUT_S} s")
    elapsed = time.monotonic() - t0
    logs = "".join(f"\n--- {p.name}:\n{p.read_text(errors='replace')[-8000:]}" for p in sorted(tmp_path.glob("*san.*")))
    report = (f"{' '.join(cmd)} with LD_PRELOAD={preload}: exit code {r.returncode} after {elapsed:.1f} s\n"
              f"stdout:\n{r.stdout[-6000:]}\nstderr:\n{r.stderr[-4000:]}{logs}")
    assert not logs, report  # a sanitizer report
    assert r.returncode == 0, report
    assert "runtime error" not in r.stderr and "AddressSanitizer" not in r.stderr, report
    m = re.search(r"(\d+) passed", r.stdout)
    assert m and int(m.group(1)) > 0 and not re.search(r"\d+ (failed|errors?)\b", r.stdout), report
