import textwrap

import pytest

GOOD_IRRIGATION = textwrap.dedent(
    """
    kind = "irrigation"
    state_dir = "{state_dir}"

    [unit]
    device_id = "dlh-test-01"
    opd = "dlh"

    [hardware]
    pin_factory = "mock"

    [[outputs]]
    name = "valve1"
    pin = 17
    max_on_s = 600

    [[outputs]]
    name = "valve2"
    pin = 27
    max_on_s = 600

    [[zones]]
    name = "lawn"
    valve = "valve1"

    [[zones]]
    name = "hedge"
    valve = "valve2"
    """
)


@pytest.fixture
def good_config_text(tmp_path):
    return GOOD_IRRIGATION.format(state_dir=tmp_path / "state")
