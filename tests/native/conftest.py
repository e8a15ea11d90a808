import sys
from pathlib import Path

# Let `pytest` run from a plain checkout (package not installed).
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))
