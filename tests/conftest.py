"""Shared pytest configuration for the whole test suite."""

# Real-broker fixtures: mosquitto, mosquitto_factory, mqtt_client_factory.
pytest_plugins = ["support"]

# Property tests assert behaviour, not speed: no per-example deadline (a loaded machine
# made the default 200 ms one fail tests whose answers were right). Speed is measured
# under bench/.
from hypothesis import settings  # noqa: E402

settings.register_profile("default", deadline=None)
settings.load_profile("default")
