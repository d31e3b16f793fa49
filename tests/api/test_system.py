"""`/api/v1/system`: system.ini is readable over HTTP and cannot be changed through it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import MASK, assert_problem, version_of_file
from tests.conftest import LiveServer

WRITE_METHODS = ["PUT", "POST", "PATCH", "DELETE"]
SYSTEM_PATHS = ["/api/v1/system", "/api/v1/system/webhook", "/api/v1/system/volume_backup", "/api/v1/system/nosuch"]


def test_read_all_of_system_ini_typed_and_versioned(module_admin: httpx.Client, module_server: LiveServer) -> None:
    admin = module_admin
    response = admin.get("/api/v1/system")

    assert response.status_code == 200, response.text
    body = response.json()
    settings = body["settings"]
    assert list(settings) == ["docker_library", "app_media", "volume_backup", "max_apps", "appmonitor", "php_apps",
                              "webhook", "history", "environments", "rules", "services",
                              "sync"]
    assert settings["docker_library"] == {"path": "/websoft9/library/apps"}
    assert settings["volume_backup"]["hostname"] == "websoft9-backup-host"
    assert settings["appmonitor"]["keys"] == ["wordpress", "wordpresspro"]
    assert "zentao" in settings["php_apps"]["keys"]
    assert settings["webhook"]["wechat"] == ""  # an empty secret has nothing to hide
    assert body["version"] == version_of_file(module_server.data.system_ini)
    assert response.headers["etag"] == f'"{body["version"]}"'
    assert admin.get("/api/v1/system", headers={"If-None-Match": response.headers["etag"]}).status_code == 304


def test_read_one_section_of_system_ini(module_admin: httpx.Client) -> None:
    response = module_admin.get("/api/v1/system/volume_backup")

    assert response.status_code == 200, response.text
    assert response.json()["section"] == "volume_backup"
    assert response.json()["settings"] == {"repopath": "/data/backup/restic-repo", "hostname": "websoft9-backup-host",
                                           "image": "restic/restic:latest"}


def test_unknown_system_section_is_404(module_admin: httpx.Client) -> None:
    assert_problem(module_admin.get("/api/v1/system/nosuch"), 404, "nosuch", "system.ini")


def test_a_secret_of_system_ini_is_masked_and_revealed_only_to_an_admin(admin: httpx.Client, reader: httpx.Client,
                                                                       live_server: LiveServer) -> None:
    # setsysconfig writes the WeChat webhook URL (its key is in the URL) in plaintext.
    url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=9393241f-0000"
    path = live_server.data.system_ini
    path.write_text(path.read_text(encoding="utf-8").replace("wechat = \n", f"wechat = {url}\n"), encoding="utf-8")

    assert admin.get("/api/v1/system/webhook").json()["settings"]["wechat"] == MASK
    assert url not in admin.get("/api/v1/system").text
    assert_problem(reader.get("/api/v1/system/webhook", params={"reveal": "true"}), 403, "admin")
    revealed = admin.get("/api/v1/system/webhook", params={"reveal": "true"})
    assert revealed.json()["settings"]["wechat"] == url
    audited = admin.get("/api/v1/audit", params={"action": "secrets.reveal"}).json()["entries"]
    assert [(e["file"], [(c["section"], c["key"]) for c in e["changes"]]) for e in audited] == [
        ("system.ini", [("webhook", "wechat")])
    ]


@pytest.mark.parametrize("path", SYSTEM_PATHS)
@pytest.mark.parametrize("method", WRITE_METHODS)
def test_every_write_method_is_405_and_system_ini_is_unchanged(module_admin: httpx.Client, module_server: LiveServer,
                                                               method: str, path: str) -> None:
    raw = module_server.data.system_ini.read_bytes()

    response = module_admin.request(method, path, json={"webhook": {"wechat": "https://example.com/x"},
                                                        "monitor_api": "https://example.com"})

    assert_problem(response, 405, method, path)
    assert response.headers["allow"] == "GET"
    assert module_server.data.system_ini.read_bytes() == raw


def test_system_ini_changed_by_the_cli_is_read_back(admin: httpx.Client, live_server: LiveServer) -> None:
    apphub = Path(sys.executable).with_name("apphub")
    result = subprocess.run([str(apphub), "--data-dir", str(live_server.data.root), "setsysconfig",
                             "--section", "max_apps", "--key", "key", "--value", "20"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr

    assert admin.get("/api/v1/system/max_apps").json()["settings"] == {"key": 20}
