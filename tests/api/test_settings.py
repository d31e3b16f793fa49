"""`/api/v1/settings` over real HTTP: typed reads, masking, ETags, merges, batches, deletes, reveal."""

from __future__ import annotations

import difflib
from collections.abc import Iterator

import httpx
import pytest

from apphub.paths import DataDir
from tests.api.conftest import MASK, Keys, assert_problem, config_bytes, version_of_file
from tests.conftest import LiveServer

WEB_SCHEMA = """\
config:
  sections:
    web:
      description: A demo service with an optional secret
      keys:
        title: {type: string, max_length: 80}
        admin_password: {type: string, secret: true}
"""


def reveal_section(admin: httpx.Client, section: str) -> dict[str, object]:
    response = admin.get(f"/api/v1/settings/{section}", params={"reveal": "true"})
    assert response.status_code == 200, response.text
    settings: dict[str, object] = response.json()["settings"]
    return settings


def stored_line(raw: bytes, section: str, key: str) -> bytes:
    """The `key = value` line of `section` as the file holds it."""
    lines = raw.splitlines()
    start = lines.index(f"[{section}]".encode())
    return next(line for line in lines[start + 1:] if line.split(b"=")[0].strip() == key.encode())


def etag_of(response: httpx.Response) -> str:
    return response.headers["etag"]


# -- reads --------------------------------------------------------------------------------------


def test_read_all_gives_typed_values_and_masks_every_secret(module_admin: httpx.Client,
                                                           module_server: LiveServer) -> None:
    response = module_admin.get("/api/v1/settings")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    settings = body["settings"]
    assert list(settings) == ["nginx_proxy_manager", "gitea", "portainer", "api_key", "docker_mirror", "domain",
                              "cockpit", "initial_apps", "favorite_apps"]
    assert settings["nginx_proxy_manager"]["listen_port"] == 9000
    assert settings["cockpit"]["port"] == 9090
    assert settings["gitea"]["user_name"] == "websoft9"
    for section, key in (("nginx_proxy_manager", "user_pwd"), ("gitea", "user_pwd"), ("portainer", "user_pwd"),
                         ("api_key", "key")):
        assert settings[section][key] == MASK
    assert body["version"] == version_of_file(module_server.data.config_ini)
    assert etag_of(response) == f'"{body["version"]}"'
    assert "enc:v1:" not in response.text


def test_read_one_section_names_it_and_types_its_values(module_admin: httpx.Client) -> None:
    response = module_admin.get("/api/v1/settings/nginx_proxy_manager")

    assert response.status_code == 200
    body = response.json()
    assert body["section"] == "nginx_proxy_manager"
    assert body["settings"]["listen_port"] == 9000
    assert body["settings"]["user_pwd"] == MASK
    assert body["settings"]["base_url"] == "http://websoft9-proxy:81/api"
    assert etag_of(response) == f'"{body["version"]}"'


def test_list_values_are_json_arrays(admin: httpx.Client, live_server: LiveServer) -> None:
    written = admin.put("/api/v1/settings/initial_apps", json={"keys": ["wordpress", "gitea"]})
    assert written.status_code == 200, written.text
    assert written.json()["settings"]["initial_apps"]["keys"] == ["wordpress", "gitea"]

    assert admin.get("/api/v1/settings/initial_apps").json()["settings"]["keys"] == ["wordpress", "gitea"]
    assert b"\nkeys = wordpress,gitea\n" in config_bytes(live_server)


def test_an_empty_list_reads_back_as_an_empty_array(admin: httpx.Client) -> None:
    # A fresh install has `[favorite_apps] keys =`; a client that maps over the list must get [], not "".
    assert admin.get("/api/v1/settings/favorite_apps").json()["settings"]["keys"] == []

    admin.put("/api/v1/settings/initial_apps", json={"keys": ["wordpress"]}).raise_for_status()
    emptied = admin.put("/api/v1/settings/initial_apps", json={"keys": []})
    assert emptied.status_code == 200, emptied.text
    assert admin.get("/api/v1/settings/initial_apps").json()["settings"]["keys"] == []


def test_read_unknown_section_is_404_problem(module_admin: httpx.Client) -> None:
    assert_problem(module_admin.get("/api/v1/settings/nosuch"), 404, "nosuch")


@pytest.fixture
def web_server(data_dir: DataDir, request: pytest.FixtureRequest) -> LiveServer:
    """The live server with an operator schema that adds [web] and its optional secret."""
    (data_dir.schema_dir / "50-web.yaml").write_text(WEB_SCHEMA, encoding="utf-8")
    server: LiveServer = request.getfixturevalue("live_server")
    return server


@pytest.fixture
def web_admin(web_server: LiveServer, admin_key: str) -> Iterator[httpx.Client]:
    with web_server.client(admin_key) as client:
        yield client


def test_an_empty_secret_reads_as_empty_and_a_set_one_as_the_mask(web_admin: httpx.Client,
                                                                   web_server: LiveServer) -> None:
    created = web_admin.put("/api/v1/settings/web", json={"title": "Demo", "admin_password": ""})
    assert created.status_code == 200, created.text
    assert created.json()["settings"]["web"] == {"title": "Demo", "admin_password": ""}
    assert web_admin.get("/api/v1/settings/web").json()["settings"]["admin_password"] == ""

    web_admin.put("/api/v1/settings/web", json={"admin_password": "correct horse"}).raise_for_status()
    assert web_admin.get("/api/v1/settings/web").json()["settings"]["admin_password"] == MASK
    assert b"correct horse" not in config_bytes(web_server)


# -- ETag and If-None-Match ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/settings", "/api/v1/settings/gitea"])
def test_if_none_match_with_the_current_etag_is_304_until_the_file_changes(admin: httpx.Client, path: str) -> None:
    first = admin.get(path)
    tag = etag_of(first)

    not_modified = admin.get(path, headers={"If-None-Match": tag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert etag_of(not_modified) == tag
    assert admin.get(path, headers={"If-None-Match": '"0000"'}).status_code == 200

    admin.put("/api/v1/settings/gitea", json={"user_email": "ops@example.com"}).raise_for_status()
    changed = admin.get(path, headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert etag_of(changed) != tag
    assert changed.json()["version"] == etag_of(changed).strip('"')


def test_etag_follows_edits_made_to_the_file_by_hand(admin: httpx.Client, live_server: LiveServer) -> None:
    before = admin.get("/api/v1/settings/cockpit")
    path = live_server.data.config_ini
    path.write_bytes(path.read_bytes().replace(b"port = 9090", b"port = 9091"))

    after = admin.get("/api/v1/settings/cockpit", headers={"If-None-Match": etag_of(before)})
    assert after.status_code == 200
    assert after.json()["settings"]["port"] == 9091
    assert after.json()["version"] == version_of_file(path)


# -- PUT one section ----------------------------------------------------------------------------


def test_put_section_merges_keys_and_returns_the_new_etag_and_section(admin: httpx.Client,
                                                                      live_server: LiveServer) -> None:
    before = admin.get("/api/v1/settings/gitea").json()

    response = admin.put("/api/v1/settings/gitea", json={"user_email": "ops@example.com"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["previous_version"] == before["version"]
    assert body["version"] != before["version"]
    assert etag_of(response) == f'"{body["version"]}"'
    assert body["version"] == version_of_file(live_server.data.config_ini)
    assert body["settings"] == {"gitea": {**before["settings"], "user_email": "ops@example.com"}}
    assert body["changed"] == [{"section": "gitea", "key": "user_email", "change": "set",
                                "old": "admin@mydomain.com", "new": "ops@example.com"}]
    assert admin.get("/api/v1/settings/gitea").json()["settings"]["user_email"] == "ops@example.com"


def test_put_accepts_a_port_as_a_number_or_as_text(admin: httpx.Client, live_server: LiveServer) -> None:
    as_number = admin.put("/api/v1/settings/cockpit", json={"port": 9091})
    assert as_number.status_code == 200, as_number.text
    assert as_number.json()["settings"]["cockpit"]["port"] == 9091
    as_text = admin.put("/api/v1/settings/cockpit", json={"port": "9092"})
    assert as_text.status_code == 200, as_text.text
    assert as_text.json()["settings"]["cockpit"]["port"] == 9092
    assert b"\nport = 9092\n" in config_bytes(live_server)


def test_put_secret_stores_it_encrypted_and_answers_with_the_mask(admin: httpx.Client,
                                                                   live_server: LiveServer) -> None:
    response = admin.put("/api/v1/settings/gitea", json={"user_pwd": "n3w-Gitea-pass"})

    assert response.status_code == 200, response.text
    assert response.json()["settings"]["gitea"]["user_pwd"] == MASK
    assert response.json()["changed"] == [{"section": "gitea", "key": "user_pwd", "change": "set",
                                           "old": MASK, "new": MASK}]
    assert "n3w-Gitea-pass" not in response.text
    raw = config_bytes(live_server)
    assert b"n3w-Gitea-pass" not in raw
    assert reveal_section(admin, "gitea")["user_pwd"] == "n3w-Gitea-pass"


def test_sending_the_mask_back_keeps_the_stored_secret(admin: httpx.Client, live_server: LiveServer) -> None:
    shown = admin.get("/api/v1/settings/gitea").json()["settings"]
    original = reveal_section(admin, "gitea")["user_pwd"]
    encrypted_line = stored_line(config_bytes(live_server), "gitea", "user_pwd")
    assert encrypted_line.startswith(b"user_pwd = enc:v1:")

    response = admin.put("/api/v1/settings/gitea", json={**shown, "user_email": "ops@example.com"})

    assert response.status_code == 200, response.text
    assert [change["key"] for change in response.json()["changed"]] == ["user_email"]
    assert reveal_section(admin, "gitea")["user_pwd"] == original
    assert stored_line(config_bytes(live_server), "gitea", "user_pwd") == encrypted_line


def test_no_op_put_leaves_version_and_bytes_unchanged(admin: httpx.Client, live_server: LiveServer) -> None:
    current = admin.get("/api/v1/settings/gitea").json()
    raw = config_bytes(live_server)

    response = admin.put("/api/v1/settings/gitea", json=current["settings"])

    assert response.status_code == 200, response.text
    assert response.json()["version"] == current["version"] == response.json()["previous_version"]
    assert response.json()["changed"] == []
    assert etag_of(response) == f'"{current["version"]}"'
    assert config_bytes(live_server) == raw


# -- PUT batch ----------------------------------------------------------------------------------


def test_put_batch_changes_several_sections_in_one_version(admin: httpx.Client, live_server: LiveServer) -> None:
    before = admin.get("/api/v1/settings").json()["version"]

    response = admin.put("/api/v1/settings", json={"gitea": {"user_email": "ops@example.com"},
                                                   "cockpit": {"port": 9091}})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["previous_version"] == before
    assert set(body["settings"]) == {"gitea", "cockpit"}
    assert body["settings"]["cockpit"] == {"port": 9091}
    assert body["settings"]["gitea"]["user_email"] == "ops@example.com"
    assert body["settings"]["gitea"]["user_pwd"] == MASK
    assert {(c["section"], c["key"]) for c in body["changed"]} == {("gitea", "user_email"), ("cockpit", "port")}
    assert body["version"] == version_of_file(live_server.data.config_ini)


def test_put_batch_is_all_or_nothing(module_admin: httpx.Client, module_server: LiveServer) -> None:
    raw = config_bytes(module_server)

    response = module_admin.put("/api/v1/settings", json={
        "gitea": {"user_email": "ops@example.com", "user_name": "ops"},
        "nginx_proxy_manager": {"nike_name": "boss"},
        "cockpit": {"port": 99999},
    })

    body = assert_problem(response, 422, "cockpit", "port")
    errors = body["errors"]
    assert isinstance(errors, list)
    assert [(e["section"], e["key"], e["rule"], e["value"]) for e in errors] == [("cockpit", "port", "max", "99999")]
    assert errors[0]["file"] == "config.ini"
    assert isinstance(errors[0]["line"], int)
    assert config_bytes(module_server) == raw


def test_put_batch_reports_every_problem_at_once(module_admin: httpx.Client, module_server: LiveServer) -> None:
    raw = config_bytes(module_server)

    response = module_admin.put("/api/v1/settings", json={
        "gitea": {"user_email": "not-an-email", "user_pwd": "Zq7!x"},
        "cockpit": {"port": "http"},
    })

    body = assert_problem(response, 422, "user_email", "user_pwd", "port")
    errors = body["errors"]
    assert isinstance(errors, list)
    assert {(e["section"], e["key"]) for e in errors} == {("gitea", "user_email"), ("gitea", "user_pwd"),
                                                          ("cockpit", "port")}
    assert next(e for e in errors if e["key"] == "user_pwd")["value"] == MASK
    assert "Zq7!x" not in response.text
    assert config_bytes(module_server) == raw


# -- DELETE -------------------------------------------------------------------------------------


def test_delete_an_optional_key(admin: httpx.Client, live_server: LiveServer) -> None:
    response = admin.delete("/api/v1/settings/nginx_proxy_manager/nike_name")

    assert response.status_code == 200, response.text
    body = response.json()
    assert "nike_name" not in body["settings"]["nginx_proxy_manager"]
    assert body["changed"] == [{"section": "nginx_proxy_manager", "key": "nike_name", "change": "delete",
                                "old": "admin", "new": None}]
    assert etag_of(response) == f'"{body["version"]}"'
    assert b"nike_name" not in config_bytes(live_server)
    assert "nike_name" not in admin.get("/api/v1/settings/nginx_proxy_manager").json()["settings"]


def test_put_adds_a_key_the_schema_knows_back_into_its_section(admin: httpx.Client,
                                                                 live_server: LiveServer) -> None:
    admin.delete("/api/v1/settings/nginx_proxy_manager/nike_name").raise_for_status()

    response = admin.put("/api/v1/settings/nginx_proxy_manager", json={"nike_name": "boss"})

    assert response.status_code == 200, response.text
    assert response.json()["changed"] == [{"section": "nginx_proxy_manager", "key": "nike_name", "change": "add",
                                           "old": None, "new": "boss"}]
    text = live_server.data.config_ini.read_text(encoding="utf-8")
    assert text.index("[nginx_proxy_manager]") < text.index("nike_name = boss") < text.index("[gitea]")


def test_delete_a_required_key_is_refused(module_admin: httpx.Client, module_server: LiveServer) -> None:
    raw = config_bytes(module_server)
    body = assert_problem(module_admin.delete("/api/v1/settings/gitea/user_pwd"), 422, "gitea", "user_pwd")
    assert body["errors"][0]["rule"] == "required"  # type: ignore[index]
    assert config_bytes(module_server) == raw


@pytest.mark.parametrize(("path", "named"), [("/api/v1/settings/gitea/no_such_key", "no_such_key"),
                                             ("/api/v1/settings/no_such_section/key", "no_such_section")])
def test_delete_unknown_key_or_section_is_404(module_admin: httpx.Client, module_server: LiveServer,
                                             path: str, named: str) -> None:
    raw = config_bytes(module_server)
    assert_problem(module_admin.delete(path), 404, named)
    assert config_bytes(module_server) == raw


# -- If-Match -----------------------------------------------------------------------------------

WRITES = [
    ("PUT", "/api/v1/settings/gitea", {"user_email": "ops@example.com"}),
    ("PUT", "/api/v1/settings", {"gitea": {"user_email": "ops@example.com"}}),
    ("DELETE", "/api/v1/settings/nginx_proxy_manager/nike_name", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_stale_if_match_is_412_and_changes_nothing(admin: httpx.Client, live_server: LiveServer, method: str,
                                                   path: str, body: object) -> None:
    stale = etag_of(admin.get("/api/v1/settings"))
    admin.put("/api/v1/settings/cockpit", json={"port": 9091}).raise_for_status()
    raw = config_bytes(live_server)

    response = admin.request(method, path, json=body, headers={"If-Match": stale})

    assert_problem(response, 412, stale.strip('"'))
    assert config_bytes(live_server) == raw


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_current_if_match_is_applied(admin: httpx.Client, method: str, path: str, body: object) -> None:
    current = etag_of(admin.get("/api/v1/settings"))

    response = admin.request(method, path, json=body, headers={"If-Match": current})

    assert response.status_code == 200, response.text
    assert response.json()["previous_version"] == current.strip('"')


@pytest.mark.parametrize("header", ['"{v}"', '"0123", "{v}"', "*"])
def test_if_match_accepts_the_current_tag_in_a_list_or_a_star(admin: httpx.Client, header: str) -> None:
    version = admin.get("/api/v1/settings").json()["version"]
    response = admin.put("/api/v1/settings/cockpit", json={"port": 9091},
                         headers={"If-Match": header.format(v=version)})
    assert response.status_code == 200, response.text


def test_a_weak_etag_never_matches(module_admin: httpx.Client, module_server: LiveServer) -> None:
    current = etag_of(module_admin.get("/api/v1/settings"))
    raw = config_bytes(module_server)

    response = module_admin.put("/api/v1/settings/cockpit", json={"port": 9091}, headers={"If-Match": f"W/{current}"})

    assert_problem(response, 412)
    assert config_bytes(module_server) == raw


# -- reveal -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/settings", "/api/v1/settings/portainer"])
def test_reveal_shows_secrets_to_an_admin_and_is_audited(admin: httpx.Client, path: str) -> None:
    admin.put("/api/v1/settings/portainer", json={"user_pwd": "Portainer-pass-1"}).raise_for_status()

    response = admin.get(path, params={"reveal": "true"}, headers={"X-Request-ID": "reveal-1"})

    assert response.status_code == 200, response.text
    settings = response.json()["settings"]
    portainer = settings["portainer"] if path == "/api/v1/settings" else settings
    assert portainer["user_pwd"] == "Portainer-pass-1"
    entries = admin.get("/api/v1/audit", params={"action": "secrets.reveal"}).json()["entries"]
    assert len(entries) == 1
    entry = entries[0]
    assert (entry["actor"], entry["source"], entry["request_id"]) == ("admin", "api", "reveal-1")
    assert ("portainer", "user_pwd") in {(c["section"], c["key"]) for c in entry["changes"]}
    assert all(c["old"] is None and c["new"] is None for c in entry["changes"])
    assert "Portainer-pass-1" not in admin.get("/api/v1/audit").text


@pytest.mark.parametrize("role", ["read", "write"])
@pytest.mark.parametrize("path", ["/api/v1/settings", "/api/v1/settings/gitea"])
def test_reveal_needs_an_admin_key(module_server: LiveServer, module_keys: Keys, module_admin: httpx.Client,
                                   role: str, path: str) -> None:
    with module_server.client(module_keys.of(role)) as client:
        response = client.get(path, params={"reveal": "true"})
        assert client.get(path).status_code == 200
    assert_problem(response, 403, "admin")
    assert "settings" not in response.json()
    assert module_admin.get("/api/v1/audit", params={"action": "secrets.reveal"}).json()["entries"] == []


# -- comments -----------------------------------------------------------------------------------


def test_comments_and_layout_survive_api_writes(admin: httpx.Client, live_server: LiveServer) -> None:
    path = live_server.data.config_ini
    text = path.read_text(encoding="utf-8")
    text = text.replace("[gitea]\n", "[gitea]\n; operator note: rotate the password every quarter\n\n")
    text = text.replace("[cockpit]\n", "[cockpit]\n# cockpit.socket listens here\n")
    text += "\n# end of file, keep this line\n"
    path.write_text(text, encoding="utf-8")

    admin.put("/api/v1/settings", json={"gitea": {"user_email": "ops@example.com"},
                                        "cockpit": {"port": 9091}}).raise_for_status()
    admin.delete("/api/v1/settings/nginx_proxy_manager/nike_name").raise_for_status()

    after = path.read_text(encoding="utf-8")
    diff = [line for line in difflib.ndiff(text.splitlines(), after.splitlines()) if line[:1] in "+-"]
    assert sorted(diff) == sorted([
        "- user_email = admin@mydomain.com", "+ user_email = ops@example.com",
        "- port = 9090", "+ port = 9091",
        "- nike_name = admin",
    ])
    assert "; operator note: rotate the password every quarter\n\n" in after
    assert after.endswith("# end of file, keep this line\n")
