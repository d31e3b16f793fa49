"""Regression: the server loaded schema.d once, at start, so an operator's new rules needed a restart.

Now a write looks at schema.d first; a change that breaks the schema is refused, the last good
schema stays in force, and `apphub check` names the broken file.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveServer
from tests.regressions.conftest import Cli

WEB_SCHEMA = """\
config:
  sections:
    web:
      description: A service an operator added
      keys:
        port: {type: port}
"""

BROKEN = {
    "yaml": "config:\n  sections: [web\n",
    "schema": "config:\n  sections:\n    web:\n      keys:\n        port: {type: colour}\n",
}


def test_a_new_schema_file_reaches_the_running_server(live_server: LiveServer, admin: httpx.Client) -> None:
    (live_server.data.schema_dir / "50-web.yaml").write_text(WEB_SCHEMA, encoding="utf-8")

    written = admin.put("/api/v1/settings/web", json={"port": 8082})

    assert written.status_code == 200, written.text
    read = admin.get("/api/v1/settings/web")
    assert read.status_code == 200, read.text
    assert read.json()["settings"] == {"port": 8082}
    assert "[web]\nport = 8082" in live_server.data.config_ini.read_text()


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_schema_edit_keeps_the_last_good_schema_in_force(live_server: LiveServer, admin: httpx.Client,
                                                                   cli: Cli, broken: str) -> None:
    schema_file = live_server.data.schema_dir / "50-web.yaml"
    schema_file.write_text(WEB_SCHEMA, encoding="utf-8")
    assert admin.put("/api/v1/settings/web", json={"port": 8082}).status_code == 200

    schema_file.write_text(BROKEN[broken], encoding="utf-8")
    refused = admin.put("/api/v1/settings/web", json={"port": 70000})
    accepted = admin.put("/api/v1/settings/web", json={"port": 8083})

    assert refused.status_code == 422, refused.text
    assert [(e["key"], e["rule"]) for e in refused.json()["errors"]] == [("port", "max")]  # the port rule
    assert accepted.status_code == 200, accepted.text
    assert admin.get("/api/v1/settings/web").json()["settings"] == {"port": 8083}
    check = cli("check")
    assert check.returncode == 1
    assert "50-web.yaml" in check.stderr
