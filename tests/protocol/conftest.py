"""Hypothesis profiles for the protocol tests.

The default run keeps example counts modest (see test_models_properties.py). For a long
fuzzing session run::

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/protocol -k properties
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "long",
    max_examples=100_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

if os.environ.get("HYPOTHESIS_PROFILE") == "long":
    settings.load_profile("long")
