"""The notifications' parts on a real SQLite database of their own, for the tests that drive the
outbox and the sender without a whole apphub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apphub.db import Database
from apphub.notify.destinations import Destinations
from apphub.notify.outbox import Outbox
from apphub.store.secrets import SecretBox


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Database, Destinations, Outbox]]:
    key = tmp_path / "secret.key"
    SecretBox.create_key_file(key)
    db = Database(tmp_path / "apphub.db")
    db.migrate()
    try:
        yield db, Destinations(db, SecretBox(key)), Outbox(db)
    finally:
        db.close()
