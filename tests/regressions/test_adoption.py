"""Regression: adopting a Websoft9 2.0-era config.ini.

That release had no `docker0_ip`, `ssl_cert` or `ssl_key` in `[nginx_proxy_manager]`. `docker0_ip`
is required, so once adopted every write to the section failed validation, and Websoft9's
setconfig cannot add a key. `apphub init` now adds the missing required keys from their defaults.
"""

from __future__ import annotations

from pathlib import Path

from apphub.core import Core
from apphub.paths import DataDir
from tests.regressions.conftest import events, run_cli

API_KEY = "9e66918137d882c6ebdc1eccb0866e25172c5f8fa2101458a8ce9b044e4c7e5e"
PASSWORDS = ("hJUGWrlDgqmGglr0", "JGFceAxAmjrx", "R@9)qn)t9hJW")

# As Websoft9's configparser wrote it (no comments, `key = value`, a blank line between sections;
# an empty value keeps the blank after `=`).
WEBSOFT9_2_0_CONFIG = f"""\
[nginx_proxy_manager]
base_url = http://websoft9-proxy:81/api
user_name = admin@mydomain.com
user_pwd = {PASSWORDS[0]}
nike_name = admin
listen_port = 443

[gitea]
base_url = http://websoft9-git:3000/api/v1
user_name = websoft9
user_email = admin@mydomain.com
user_pwd = {PASSWORDS[1]}

[portainer]
base_url = http://websoft9-deployment:9000/api
user_name = admin
user_pwd = {PASSWORDS[2]}

[api_key]
key = {API_KEY}

[domain]
wildcard_domain = {""}

[cockpit]
port = 9000

"""


def test_init_adopts_a_websoft9_2_0_config_and_setconfig_then_works(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")
    data.root.mkdir()
    data.config_ini.write_text(WEBSOFT9_2_0_CONFIG, encoding="utf-8")

    init = run_cli(data, "init")

    assert init.returncode == 0, init.stderr
    core = Core(data)
    try:
        stored = core.config.snapshot().document
        assert stored.get("nginx_proxy_manager", "docker0_ip") == "172.17.0.1"
        for section, key in (("nginx_proxy_manager", "user_pwd"), ("gitea", "user_pwd"),
                             ("portainer", "user_pwd"), ("api_key", "key")):
            assert (stored.get(section, key) or "").startswith("enc:v1:"), (section, key)
    finally:
        core.close()
    completed = events(data, "settings.complete")
    assert [(e.actor, e.file) for e in completed] == [("init", "config.ini")]
    assert completed[0].keys == {("nginx_proxy_manager", "docker0_ip")}
    text = data.config_ini.read_text()
    for plaintext in (*PASSWORDS, API_KEY):
        assert plaintext not in text

    getkey = run_cli(data, "getkey")
    assert getkey.returncode == 0, getkey.stderr
    assert getkey.stdout.strip() == API_KEY

    setconfig = run_cli(data, "setconfig", "--section", "nginx_proxy_manager", "--key", "listen_port",
                        "--value", "9000")
    assert setconfig.returncode == 0, setconfig.stderr
    assert setconfig.stdout == ""
    assert "listen_port = 9000" in data.config_ini.read_text()
