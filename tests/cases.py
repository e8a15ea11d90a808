"""Where the golden fixtures are: ../shared/fixtures (public; segmentation/ in it) and
tests/fixtures/{extra, segmentation} (ours, made with the official code by shared/tools/official)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPAN_SHARED", REPO.parent / "shared"))
PUBLIC = SHARED / "fixtures"
EXTRA = REPO / "tests" / "fixtures" / "extra"
SEG_PUBLIC = PUBLIC / "segmentation"                         # the two public segmentation cases
SEG_EXTRA = REPO / "tests" / "fixtures" / "segmentation"      # ours: other decoder knobs and geometries


def case_dirs(root: Path, errors: bool = False) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"fixtures folder missing: {root} (set SPAN_SHARED to the shared/ folder)")
    want = "expected_error.txt" if errors else "expected.npz"
    return sorted(p for p in root.iterdir() if (p / want).is_file())


PUBLIC_CASES = case_dirs(PUBLIC)
EXTRA_CASES = case_dirs(EXTRA)
ALL_CASES = PUBLIC_CASES + EXTRA_CASES
ERROR_CASES = case_dirs(EXTRA, errors=True)
SEG_CASES = case_dirs(SEG_PUBLIC) + case_dirs(SEG_EXTRA)


def ids(cases: list[Path]) -> list[str]:
    return [p.name for p in cases]


def ops_library_or_skip():
    """The built custom-op library; in CI (CI=true) a missing library fails instead of skipping."""
    import pytest

    from span_deploy.errors import BackendError
    from span_deploy.native import ort_ops_library

    try:
        return ort_ops_library()
    except BackendError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the custom-op library first: {e}")
        pytest.skip(str(e))
