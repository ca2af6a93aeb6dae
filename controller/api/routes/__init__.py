"""One APIRouter per file; `controller.api.main` includes them all."""
