"""Fixtures of the update tests (``support.release`` builds the bundles and the tree):
``kit``, the session's release key, dependency wheels and bundles; ``unit_tree``, a unit
under ``--root`` against the test's Mosquitto, its daemon stopped afterwards."""

from __future__ import annotations

import pytest
from support.release import Kit, make_kit, make_tree


@pytest.fixture(scope="session")
def kit(tmp_path_factory) -> Kit:
    return make_kit(tmp_path_factory.mktemp("release"))


@pytest.fixture
def unit_tree(tmp_path, kit, mosquitto):
    tree = make_tree(tmp_path, kit, mosquitto)
    yield tree
    tree.stop()
