"""Where things live inside a data folder (DESIGN §8)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "APPHUB_DATA"


def default_data_dir() -> Path:
    """The data folder used when neither --data-dir nor APPHUB_DATA says otherwise."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "apphub"


@dataclass(frozen=True)
class DataDir:
    """The layout of one data folder; every part asks this object for its paths."""

    root: Path

    @property
    def config_ini(self) -> Path:
        return self.root / "config.ini"

    @property
    def system_ini(self) -> Path:
        return self.root / "system.ini"

    @property
    def env_ini(self) -> Path:
        return self.root / "env.ini"

    @property
    def schema_dir(self) -> Path:
        return self.root / "schema.d"

    @property
    def state_dir(self) -> Path:
        return self.root / ".apphub"

    @property
    def database(self) -> Path:
        return self.state_dir / "apphub.db"

    @property
    def secret_key(self) -> Path:
        return self.state_dir / "secret.key"

    @property
    def admin_key(self) -> Path:
        return self.state_dir / "admin.key"

    @property
    def lock_dir(self) -> Path:
        return self.state_dir / "locks"

    def lock_for(self, path: Path) -> Path:
        """The lock file that guards writes to `path` (a sidecar, since the file itself is replaced)."""
        return self.lock_dir / f"{path.name}.lock"

    def is_initialised(self) -> bool:
        return self.config_ini.is_file() and self.secret_key.is_file() and self.database.is_file()
