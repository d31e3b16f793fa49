"""The env API on a live server: kinds and sources, writes validated, audited, versioned and
refused where the manifest maps a name; secrets never shown.

The data folder has two services taking an environment: `web` (a `.env` file under the test's
root, with a mapped variable made of a config.ini key) and `worker` (a `.env` too, mapping a secret).
The sync engine runs, so a write also lands in the `.env` files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.paths import DataDir
from apphub.sync.render.dotenv_reader import read
from tests.conftest import LiveServer, serving

SETUP = Actor("test", "test")
MASK = "********"
SECRET = "pa$$ word with 'quotes' and \\ and \"more\""
MANIFEST = """\
services:
  web:
    env_file: {root}/web/.env
    env:
      WEB_ROOT_URL: "http://${{gitea.base_url}}/web"
  worker:
    env_file: {root}/worker/.env
    env:
      WORKER_DB_PASSWORD: "${{portainer.user_pwd}}"
  plain:
    files:
      - path: {root}/plain.json
        map: {{port: "${{cockpit.port}}"}}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    made = tmp_path / "srv"
    made.mkdir()
    return made


@pytest.fixture
def server(data_dir: DataDir, root: Path) -> Iterator[LiveServer]:
    with _core(data_dir) as core:
        core.system.update({"sync": {"roots": str(root), "debounce_ms": 20, "drift_interval_s": 0}}, SETUP)
    (data_dir.root / "services.yaml").write_text(MANIFEST.format(root=root))
    with serving(data_dir) as live:
        yield live


class _core:
    def __init__(self, data: DataDir) -> None:
        self.core = Core(data)

    def __enter__(self) -> Core:
        return self.core

    def __exit__(self, *_: object) -> None:
        self.core.close()


@pytest.fixture
def client(server: LiveServer, admin_key: str) -> Iterator[httpx.Client]:
    with server.client(admin_key) as made:
        yield made


def variables(body: dict[str, object]) -> dict[str, dict[str, object]]:
    found = body["variables"]
    assert isinstance(found, list)
    return {var["name"]: var for var in found}


def test_the_listing_gives_every_scope_with_kind_and_source(client: httpx.Client) -> None:
    client.put("/api/v1/env/global", json={"TZ": "Europe/Berlin"}).raise_for_status()
    answer = client.get("/api/v1/env")
    assert answer.status_code == 200
    scopes = answer.json()["scopes"]
    assert set(scopes) == {"global", "web", "worker"}  # `plain` takes no environment
    web = variables(scopes["web"])
    assert web["TZ"] == {"name": "TZ", "value": "Europe/Berlin", "kind": "independent",
                         "source": "env.ini [global]", "secret": False}
    assert web["WEB_ROOT_URL"]["kind"] == "mapped"
    assert web["WEB_ROOT_URL"]["keys"] == ["gitea.base_url"]
    assert web["WEB_ROOT_URL"]["source"] == "http://${gitea.base_url}/web"
    worker = variables(scopes["worker"])
    assert worker["WORKER_DB_PASSWORD"]["secret"] is True  # mapped from a secret: a secret
    assert worker["WORKER_DB_PASSWORD"]["value"] == MASK
    tag = answer.headers["ETag"]
    assert client.get("/api/v1/env", headers={"If-None-Match": tag}).status_code == 304


def test_a_secret_is_stored_encrypted_and_never_shown(client: httpx.Client, data_dir: DataDir, root: Path) -> None:
    answer = client.put("/api/v1/env/web/SMTP_PASSWORD", json={"value": SECRET, "secret": True},
                        params={"wait": "true"})
    assert answer.status_code == 200, answer.text
    assert SECRET not in answer.text
    assert variables(answer.json()["scope"])["SMTP_PASSWORD"]["value"] == MASK
    stored = data_dir.env_ini.read_text()
    assert "SMTP_PASSWORD = enc:v1:" in stored
    assert SECRET not in stored
    for path in ("/api/v1/env", "/api/v1/env/web", "/api/v1/audit", "/api/v1/settings/history"):
        assert SECRET not in client.get(path).text, path
    # the service gets it in plaintext, quoted so that docker compose reads it back exactly
    assert read((root / "web" / ".env").read_text())["SMTP_PASSWORD"] == SECRET
    assert (root / "web" / ".env").stat().st_mode & 0o777 == 0o600
    revealed = client.get("/api/v1/env/web", params={"reveal": "true"})
    assert variables(revealed.json())["SMTP_PASSWORD"]["value"] == SECRET
    # sending the mask back keeps the value
    client.put("/api/v1/env/web", json={"SMTP_PASSWORD": {"value": MASK, "secret": True}}).raise_for_status()
    revealed = client.get("/api/v1/env/web", params={"reveal": "true"})
    assert variables(revealed.json())["SMTP_PASSWORD"]["value"] == SECRET


def test_a_read_key_cannot_reveal_nor_write(server: LiveServer, core_keys: dict[str, str]) -> None:
    with server.client(core_keys["read"]) as reader:
        assert reader.get("/api/v1/env/web", params={"reveal": "true"}).status_code == 403
        assert reader.put("/api/v1/env/global/TZ", json={"value": "UTC"}).status_code == 403
        assert reader.get("/api/v1/env/web").status_code == 200


@pytest.fixture
def core_keys(server: LiveServer, data_dir: DataDir) -> dict[str, str]:
    with _core(data_dir) as core:
        return {"read": core.keys.create("reader", "read")}


def test_a_mapped_name_is_refused_naming_its_source(client: httpx.Client, data_dir: DataDir) -> None:
    before = data_dir.env_ini.read_bytes()
    answer = client.put("/api/v1/env/web", json={"WEB_ROOT_URL": "x", "OK_NAME": "y"})
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    assert [(e["key"], e["rule"]) for e in errors] == [("WEB_ROOT_URL", "mapped")]
    assert "${gitea.base_url}" in errors[0]["message"]
    assert "service web" in errors[0]["message"]
    # global: a value there would be hidden in web, so it is refused as well
    assert client.put("/api/v1/env/global/WEB_ROOT_URL", json={"value": "x"}).status_code == 422
    assert data_dir.env_ini.read_bytes() == before  # all or nothing


@pytest.mark.parametrize(("scope", "name", "rule"), [
    ("web", "1BAD", None),  # the path pattern refuses it
    ("web", "BAD-NAME", None),
    ("nosuchservice", "X", "scope"),
    ("plain", "X", "scope"),  # a service that takes no environment
])
def test_bad_names_and_scopes_are_refused(client: httpx.Client, data_dir: DataDir, scope: str, name: str,
                                          rule: str | None) -> None:
    before = data_dir.env_ini.read_bytes()
    answer = client.put(f"/api/v1/env/{scope}/{name}", json={"value": "v"})
    assert answer.status_code in (400, 422), answer.text
    if rule is not None:
        assert rule in {error["rule"] for error in answer.json()["errors"]}
    assert data_dir.env_ini.read_bytes() == before


def test_a_batch_with_a_bad_name_or_a_nul_writes_nothing(client: httpx.Client, data_dir: DataDir) -> None:
    before = data_dir.env_ini.read_bytes()
    answer = client.put("/api/v1/env/web", json={"GOOD": "x", "9BAD": "y", "NUL": "a\x00b"})
    assert answer.status_code == 422
    assert {(e["key"], e["rule"]) for e in answer.json()["errors"]} == {("9BAD", "name"), ("NUL", "nul")}
    assert data_dir.env_ini.read_bytes() == before


@pytest.mark.parametrize("value", ["", " lead and trail ", "two\nlines", "tab\there", '"quoted"', "$HOME ${X}",
                                   "back\\\\slash\\", "ünïcödé ✓", "a=b;c#d"])
def test_any_text_but_nul_reads_back_exactly(client: httpx.Client, root: Path, value: str) -> None:
    answer = client.put("/api/v1/env/web/AWKWARD", json={"value": value}, params={"wait": "true"})
    assert answer.status_code == 200, answer.text
    assert variables(answer.json()["scope"])["AWKWARD"]["value"] == value
    assert read((root / "web" / ".env").read_text())["AWKWARD"] == value


def test_unset_and_if_match(client: httpx.Client) -> None:
    first = client.put("/api/v1/env/worker/A", json={"value": "1"})
    version = first.json()["version"]
    second = client.put("/api/v1/env/worker/B", json={"value": "2"}, headers={"If-Match": f'"{version}"'})
    assert second.status_code == 200
    stale = client.put("/api/v1/env/worker/C", json={"value": "3"}, headers={"If-Match": f'"{version}"'})
    assert stale.status_code == 412
    gone = client.delete("/api/v1/env/worker/A")
    assert gone.status_code == 200
    assert "A" not in variables(gone.json()["scope"])
    assert client.delete("/api/v1/env/worker/A").status_code == 404


def test_changes_are_audited_masked_and_in_the_history(client: httpx.Client) -> None:
    client.put("/api/v1/env/web/SMTP_PASSWORD", json={"value": SECRET, "secret": True},
               params={"message": "mail relay"}).raise_for_status()
    client.put("/api/v1/env/global/TZ", json={"value": "UTC"}).raise_for_status()
    audit = client.get("/api/v1/audit", params={"action": "env.set"}).json()
    changes = [(c["section"], c["key"], c["new"]) for e in audit["entries"] for c in e["changes"]]
    assert ("web", "SMTP_PASSWORD", MASK) in changes
    assert ("global", "TZ", "UTC") in changes
    history = client.get("/api/v1/settings/history", params={"file": "env.ini"}).json()
    messages = [entry["message"] for entry in history["entries"]]
    assert "mail relay" in messages
    diff = client.get("/api/v1/settings/diff", params={"from": history["entries"][-1]["commit"],
                                                      "file": "env.ini"})
    assert diff.status_code == 200, diff.text
    assert SECRET not in diff.text
    assert "TZ" in diff.text


def test_the_plan_of_an_env_change_touches_nothing_and_masks_secrets(client: httpx.Client, data_dir: DataDir,
                                                                      root: Path) -> None:
    client.put("/api/v1/env/web?wait=true", json={"TZ": "UTC"}).raise_for_status()
    before = (data_dir.env_ini.read_bytes(), (root / "web" / ".env").read_bytes())
    answer = client.post("/api/v1/env/web/plan", json={"TZ": "Asia/Tokyo",
                                                       "TOKEN": {"value": SECRET, "secret": True}})
    assert answer.status_code == 200, answer.text
    assert SECRET not in answer.text
    web = {service["service"]: service for service in answer.json()["services"]}["web"]
    assert web["changed"] is True
    diff = web["files"][0]["diff"]
    assert "+TZ=Asia/Tokyo" in diff
    assert "TOKEN=" in diff
    assert (data_dir.env_ini.read_bytes(), (root / "web" / ".env").read_bytes()) == before
    refused = client.post("/api/v1/env/web/plan", json={"WEB_ROOT_URL": "x"})
    assert refused.status_code == 422
    assert client.put("/api/v1/env/web/plan", json={"value": "x"}).status_code == 405


def test_env_ini_rolls_back_in_one_call(client: httpx.Client, root: Path) -> None:
    client.put("/api/v1/env/web?wait=true", json={"TZ": "UTC"}).raise_for_status()
    history = client.get("/api/v1/settings/history", params={"file": "env.ini", "limit": 1}).json()
    good = history["entries"][0]["commit"]
    client.put("/api/v1/env/web?wait=true", json={"TZ": "Mars/Olympus", "EXTRA": "1"}).raise_for_status()
    plan = client.post("/api/v1/settings/rollback/plan", json={"version": good, "file": "env.ini"})
    assert plan.status_code == 200, plan.text
    web = {service["service"]: service for service in plan.json()["services"]["services"]}["web"]
    assert "+TZ=UTC" in web["files"][0]["diff"]
    answer = client.post("/api/v1/settings/rollback?wait=true", json={"version": good, "file": "env.ini"})
    assert answer.status_code == 200, answer.text
    env = read((root / "web" / ".env").read_text())
    assert env["TZ"] == "UTC"
    assert "EXTRA" not in env  # apphub set it, and no longer does: taken out of the file


def test_small_refusals_name_what_is_wrong(client: httpx.Client, data_dir: DataDir) -> None:
    mapped = client.delete("/api/v1/env/web/WEB_ROOT_URL")
    assert mapped.status_code == 422, mapped.text
    assert mapped.json()["errors"][0]["rule"] == "mapped"
    first = client.put("/api/v1/env/web/A", json={"value": "1"}).json()["version"]
    client.put("/api/v1/env/web/B", json={"value": "2"}).raise_for_status()
    stale = client.put("/api/v1/env/web/C", json={"value": "3"}, headers={"If-Match": f'"{first}"'})
    assert stale.status_code == 412
    assert "env.ini changed since version" in stale.json()["detail"]
    masked = client.put("/api/v1/env/web/NEW_SECRET", json={"value": MASK, "secret": True})
    assert masked.status_code == 422, masked.text
    assert masked.json()["errors"][0]["rule"] == "masked"
