"""The fault campaigns live in the top-level ``faults`` folder, which is not installed:
make the repository root importable whatever way pytest was started."""

import sys
from pathlib import Path

import pytest
from support.broker import find_mosquitto

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _needs_mosquitto():
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
