"""Shared pytest configuration for the whole test suite."""

# Real-broker fixtures: mosquitto, mosquitto_factory, mqtt_client_factory.
pytest_plugins = ["support"]
