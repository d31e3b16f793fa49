"""The console's tests use the API tests' keys (one per role, on the live server's data folder)."""

from tests.api.conftest import keys

__all__ = ["keys"]
