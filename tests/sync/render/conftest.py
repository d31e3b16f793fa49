"""Values built from a real Snapshot: an initialised data folder, a schema.d file naming a `web`
section, and config.ini written through the store (so the secret is stored encrypted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.sync.values import Values

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GITEA_TEMPLATE = FIXTURES / "gitea-v1.26.3-docker-rootful-app.ini.template"

# Long enough, and odd enough (a blank, '#', '$', quotes), to need quoting in every format.
ADMIN_PASSWORD = "pa$$ w0rd #'q\"-Zx81"

WEB_SCHEMA = """\
config:
  sections:
    web:
      description: the demo web service
      keys:
        port: {type: port, default: 8080}
        title: {type: string, default: "Demo site"}
        debug: {type: bool, default: false}
        hosts: {type: list, default: [web.example.com, www.example.com]}
        root_url: {type: url, default: "https://git.example.com/"}
        domain: {type: hostname, default: git.example.com}
        origins: {type: string, default: "https://172.17.0.1:9000"}
        admin_password: {type: string, secret: true, min_length: 8}
"""


def make_values(core: Core, changes: dict[str, object] | None = None, environ: dict[str, str] | None = None) -> Values:
    core.data.schema_dir.mkdir(exist_ok=True)
    (core.data.schema_dir / "web.yaml").write_text(WEB_SCHEMA, encoding="utf-8")
    core.config.update({"web": {"admin_password": ADMIN_PASSWORD, **(changes or {})}}, Actor("render-test", "test"))
    return Values(core.config.snapshot(), environ=environ if environ is not None else {"HOME": "/root"})


@pytest.fixture
def values(core: Core) -> Values:
    """config.ini with [web] port 8443, debug true, the admin password (a secret), defaults for the rest."""
    return make_values(core, {"port": 8443, "debug": True})


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    return folder
