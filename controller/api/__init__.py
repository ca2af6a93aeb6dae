"""The HTTP API (FastAPI): `controller.api.main.create_app` builds it."""
