"""The Websoft9 profile (examples/websoft9): what replaces Websoft9's host-side crontab.sh loop.

No Cockpit, Nginx Proxy Manager or Gitea runs here, so the profile is exercised up to the point
where a real host would take over: its manifest loads with the roots it ships, `install.sh` and
`apphub check` accept it in a real data folder, and the real Planner renders every target file of
a realistic host (files laid out under a temporary folder, the manifest's paths moved there) and
picks each service's reload. The Cockpit health probe, a shell command, runs for real against a
loopback HTTP server standing in for Cockpit's /ping, also as the gate of a real Applier whose
reloads (systemctl, docker exec) are recorded instead of run: there is no systemd or Docker here.
"""

from __future__ import annotations

import configparser
import http.server
import json
import re
import shutil
import string
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.db import Database
from apphub.errors import ManifestError, ValidationFailed
from apphub.paths import DataDir
from apphub.reload.base import Reloaders
from apphub.reload.health import HealthChecker
from apphub.reload.probes import CommandProbe
from apphub.store.snapshot import Snapshot
from apphub.sync.apply import Applier, ApplyReport
from apphub.sync.journal import Journal
from apphub.sync.manifest import (
    Action,
    ContainerExecAction,
    ContainerRestartAction,
    ExecAction,
    HealthSpec,
    Manifest,
    dependency_order,
    load_manifest,
)
from apphub.sync.plan import Plan, Planner
from tests.cli.conftest import APPHUB, run_apphub
from tests.conftest import free_port
from tests.sync.render.conftest import GITEA_TEMPLATE

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "websoft9"
ACTOR = Actor("websoft9-profile-test", "test")

COCKPIT_CONF = "/etc/cockpit/cockpit.conf"
DROP_IN = "/etc/systemd/system/cockpit.socket.d/listen.conf"
CUSTOM_VAR = "/var/lib/docker/volumes/websoft9_nginx_var/_data/custom_var.conf"
CUSTOM_SSL = "/var/lib/docker/volumes/websoft9_nginx_var/_data/custom_ssl.conf"
APP_INI = "/var/lib/docker/volumes/websoft9_gitea/_data/gitea/conf/app.ini"

# A Websoft9 host's cockpit.conf after crontab.sh has run: the file Websoft9 installs (its docs
# comment, AllowUnencrypted), Origins as the loop wrote it (for an older bridge address), and what
# an operator added: a key without spaces, a ';' comment, another section.
HOST_COCKPIT_CONF = (
    "# docs: https://cockpit-project.org/guide/latest/cockpit.conf.5.html\n"
    "\n"
    "[WebService]\n"
    "AllowUnencrypted = true\n"
    "Origins = http://172.17.0.9:9000 ws://172.17.0.9:9000\n"
    "LoginTitle=Websoft9 console\n"
    "; the proxy terminates TLS\n"
    "ProtocolHeader = X-Forwarded-Proto\n"
    "\n"
    "[Session]\n"
    "IdleTimeout=15\n"
)
# The cockpit.conf Websoft9's install_cockpit.sh copies (cockpit/cockpit.conf): no Origins, no final newline.
SHIPPED_COCKPIT_CONF = (
    "# docs: https://cockpit-project.org/guide/latest/cockpit.conf.5.html\n\n[WebService]\nAllowUnencrypted = true"
)
# The snippets Websoft9's proxy image ships (docker/proxy/config/), byte for byte.
SHIPPED_CUSTOM_VAR = "set $docker0_ip 172.17.0.1;\nset $cockpit_port 9091;\nset $console_port 9000;"
SHIPPED_CUSTOM_SSL = (
    " ssl_certificate /data/custom_ssl/websoft9-self-signed.cert;\n"
    " ssl_certificate_key /data/custom_ssl/websoft9-self-signed.key;"
)
# The environment the gitea/gitea entrypoint renders app.ini with on a Websoft9 host: the image's
# defaults plus what Websoft9's compose file sets (reference/websoft9-apphub.md §4.1).
GITEA_FIRST_START_ENV = {
    "APP_NAME": "Gitea: Git with a cup of tea", "RUN_MODE": "prod", "DOMAIN": "localhost", "SSH_DOMAIN": "localhost",
    "HTTP_PORT": "3000", "ROOT_URL": "http://localhost/w9git/", "DISABLE_SSH": "true", "SSH_PORT": "22",
    "SSH_LISTEN_PORT": "22", "LFS_START_SERVER": "false", "DB_TYPE": "sqlite3", "DB_HOST": "localhost:3306",
    "DB_NAME": "gitea", "DB_USER": "root", "DB_PASSWD": "", "INSTALL_LOCK": "true", "SECRET_KEY": "",
    "DISABLE_REGISTRATION": "true", "REQUIRE_SIGNIN_VIEW": "false",
}

SOCKET_RELOAD = ["sh", "-c", "systemctl daemon-reload && systemctl restart cockpit.socket"]
COCKPIT_RESTART = ["systemctl", "restart", "cockpit"]
NGINX_RELOAD = ["nginx", "-s", "reload"]


def shipped_roots() -> list[str]:
    """system.ini [sync] roots as the profile ships them (system-sync.ini, which install.sh reads)."""
    parser = configparser.ConfigParser()
    parser.read_string((EXAMPLE / "system-sync.ini").read_text(encoding="utf-8"))
    return parser["sync"]["roots"].split(",")


def gitea_app_ini() -> str:
    """app.ini as the gitea/gitea image writes it on a Websoft9 host's first start (envsubst of its template)."""
    return string.Template(GITEA_TEMPLATE.read_text(encoding="utf-8")).substitute(GITEA_FIRST_START_ENV)


def swap_line(text: str, old: str, new: str) -> str:
    """`text` with the one whole line `old` replaced by `new` (fails the test unless it is there once)."""
    lines = text.splitlines(keepends=True)
    found = [number for number, line in enumerate(lines) if line.rstrip("\n") == old]
    assert len(found) == 1, f"{old!r} is there {len(found)} times"
    lines[found[0]] = new + lines[found[0]][len(old):]
    return "".join(lines)


@dataclass
class Host:
    """A stand-in for the host's `/`: every real path of the profile, moved under `root`."""

    root: Path

    def path(self, real: str) -> Path:
        return self.root / real.lstrip("/")

    def relocate(self, text: str) -> str:
        """`text` with every path under a shipped root moved under `root` (one pass, longest root first)."""
        roots = sorted(shipped_roots(), key=len, reverse=True)
        pattern = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, roots)) + r")(?=/|\b|$)")
        return pattern.sub(lambda match: str(self.path(match.group(1))), text)

    def write(self, real: str, text: str) -> None:
        self.path(real).write_text(text, encoding="utf-8")

    def read(self, real: str) -> str:
        return self.path(real).read_text(encoding="utf-8")


@dataclass
class Profile:
    """The profile installed in a real data folder, its manifest pointing into `host`."""

    core: Core
    host: Host
    manifest: Manifest

    def planner(self) -> Planner:
        return Planner(self.manifest, self.core.data.root / self.manifest.templates, {})

    def plan_change(self, changes: dict[str, dict[str, object]]) -> Plan:
        current = self.core.config.snapshot()
        return self.planner().plan(self.core.config.preview(changes), previous=current)

    def settle(self) -> Snapshot:
        """Bring the host's files to what config.ini says now, as an apply would (without reloads)."""
        snapshot = self.core.config.snapshot()
        plan = self.planner().plan(snapshot)
        assert not plan.errors, plan.errors
        for service in plan.services.values():
            for file in service.files:
                Path(file.spec.path).write_bytes(file.after)
        return snapshot


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """A Websoft9 host's files: the ones crontab.sh kept in step, and a first-start Gitea app.ini."""
    host = Host(tmp_path / "host")
    for root in shipped_roots():
        host.path(root).mkdir(parents=True)
    host.write(COCKPIT_CONF, HOST_COCKPIT_CONF)
    host.write(CUSTOM_VAR, SHIPPED_CUSTOM_VAR)
    host.write(CUSTOM_SSL, SHIPPED_CUSTOM_SSL)
    host.write(APP_INI, gitea_app_ini())
    return host


@pytest.fixture
def profile(core: Core, host: Host) -> Profile:
    data = core.data.root
    (data / "schema.d").mkdir(exist_ok=True)
    shutil.copy(EXAMPLE / "schema.d" / "websoft9-sync.yaml", data / "schema.d" / "websoft9-sync.yaml")
    shutil.copytree(EXAMPLE / "templates", data / "templates")
    manifest_text = host.relocate((EXAMPLE / "services.yaml").read_text(encoding="utf-8"))
    (data / "services.yaml").write_text(manifest_text, encoding="utf-8")
    roots = [str(host.path(root)) for root in shipped_roots()]
    core.system.update({"sync": {"roots": ",".join(roots)}}, ACTOR)
    manifest = load_manifest(data / "services.yaml", roots, data)
    return Profile(core, host, manifest)


def changed_services(plan: Plan) -> set[str]:
    assert not plan.errors, plan.errors
    return {service.name for service in plan.changed()}


def after(plan: Plan, service: str, real: str, host: Host) -> str:
    files = {file.spec.path: file for file in plan.services[service].files}
    return files[str(host.path(real))].after.decode("utf-8")


# -- the manifest -------------------------------------------------------------------------------


def test_the_manifest_loads_with_the_roots_it_ships_and_every_file_under_one(tmp_path: Path) -> None:
    roots = shipped_roots()

    manifest = load_manifest(EXAMPLE / "services.yaml", roots, tmp_path / "data")

    assert set(manifest.services) == {"cockpit-socket", "cockpit", "proxy", "gitea"}
    paths = {file.path for service in manifest.services.values() for file in service.files}
    assert paths == {COCKPIT_CONF, DROP_IN, CUSTOM_VAR, CUSTOM_SSL, APP_INI}
    # cockpit.socket moves first, so nginx is pointed at a port Cockpit already listens on.
    assert dependency_order(manifest) == [["cockpit-socket", "gitea"], ["cockpit", "proxy"]]


def test_the_relocated_manifest_keeps_its_structure_and_is_refused_outside_its_roots(
        profile: Profile, host: Host, tmp_path: Path) -> None:
    shipped = load_manifest(EXAMPLE / "services.yaml", shipped_roots(), tmp_path / "data")
    moved = profile.manifest
    for name, service in shipped.services.items():
        moved_paths = [file.path for file in moved.services[name].files]
        assert [str(host.path(file.path)) for file in service.files] == moved_paths
        assert moved.services[name].reload == service.reload
        assert moved.services[name].depends_on == service.depends_on
    # The same manifest with the real roots only: none of the moved paths is allowed.
    refused = r"service cockpit, file 1 \(.*/host/etc/cockpit/cockpit.conf\): path: is not under a root"
    with pytest.raises(ManifestError, match=refused):
        load_manifest(profile.core.data.root / "services.yaml", shipped_roots(), profile.core.data.root)


def test_install_sh_installs_the_profile_and_apphub_check_passes(data_dir: DataDir, tmp_path: Path) -> None:
    home = tmp_path / "xdg"
    # Copied alone, the manifest is refused by `apphub check`: system.ini has no roots yet.
    shutil.copy(EXAMPLE / "services.yaml", data_dir.root / "services.yaml")
    refused = run_apphub("check", data=data_dir, home=home)
    assert refused.returncode == 1
    assert f"service cockpit, file 1 ({COCKPIT_CONF}): path: is not under a root" in refused.stderr

    installed = subprocess.run([str(EXAMPLE / "install.sh"), str(data_dir.root)], capture_output=True, text=True,
                               env={"PATH": "/usr/bin:/bin", "APPHUB": str(APPHUB), "XDG_DATA_HOME": str(home)},
                               timeout=60, check=False)

    assert installed.returncode == 0, installed.stderr
    assert "config.ini: OK" in installed.stdout
    assert "system.ini: OK" in installed.stdout
    assert (data_dir.root / "schema.d" / "websoft9-sync.yaml").read_bytes() == \
        (EXAMPLE / "schema.d" / "websoft9-sync.yaml").read_bytes()
    assert sorted(p.name for p in (data_dir.root / "templates" / "websoft9").iterdir()) == \
        sorted(p.name for p in (EXAMPLE / "templates" / "websoft9").iterdir())
    core = Core(data_dir)
    try:
        assert core.system.snapshot().document.get("sync", "roots") == ",".join(shipped_roots())
    finally:
        core.close()


def test_install_sh_refuses_to_replace_a_manifest_of_other_services(data_dir: DataDir, tmp_path: Path) -> None:
    mine = "services:\n  web:\n    files: []\n"
    (data_dir.root / "services.yaml").write_text(mine)

    result = subprocess.run([str(EXAMPLE / "install.sh"), str(data_dir.root)], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "APPHUB": str(APPHUB), "XDG_DATA_HOME": str(tmp_path)},
                            timeout=60, check=False)

    assert result.returncode == 1
    assert "merge its services by hand" in result.stderr
    assert (data_dir.root / "services.yaml").read_text() == mine
    assert not (data_dir.root / "schema.d" / "websoft9-sync.yaml").exists()


# -- what each file becomes -------------------------------------------------------------------


def test_a_full_sync_renders_each_file_of_a_websoft9_host(profile: Profile, host: Host) -> None:
    plan = profile.planner().plan(profile.core.config.snapshot())

    assert changed_services(plan) == {"cockpit-socket", "cockpit", "proxy"}
    # cockpit.conf: only the Origins line, in crontab.sh's form, with the console port; every other byte stays.
    expected_conf = swap_line(HOST_COCKPIT_CONF, "Origins = http://172.17.0.9:9000 ws://172.17.0.9:9000",
                              "Origins = http://172.17.0.1:9000 ws://172.17.0.1:9000")
    assert after(plan, "cockpit", COCKPIT_CONF, host) == expected_conf
    assert after(plan, "cockpit-socket", DROP_IN, host) == (
        "# Written by apphub from config.ini [cockpit] port: change that key, not this file\n"
        "# (apphub config set cockpit port N, or Websoft9's setconfig / PUT /api/settings).\n"
        "# The empty ListenStream= drops the packaged port of cockpit.socket, and any sed edit of it.\n"
        "[Socket]\n"
        "ListenStream=\n"
        "ListenStream=9090\n"
    )
    assert after(plan, "proxy", CUSTOM_VAR, host) == (
        "# Written by apphub from config.ini: [nginx_proxy_manager] docker0_ip and listen_port, [cockpit] port.\n"
        "# Change those keys, not this file: the proxy's own configuration reads these variables.\n"
        "set $docker0_ip 172.17.0.1;\n"
        "set $cockpit_port 9090;\n"
        "set $console_port 9000;\n"
    )
    assert after(plan, "proxy", CUSTOM_SSL, host) == (
        "# Written by apphub from config.ini [nginx_proxy_manager] ssl_cert and ssl_key\n"
        "# (paths inside the websoft9-proxy container). Change those keys, not this file.\n"
        "ssl_certificate /data/custom_ssl/websoft9-self-signed.cert;\n"
        "ssl_certificate_key /data/custom_ssl/websoft9-self-signed.key;\n"
    )
    # A Gitea that still has Websoft9's first-start values gets no write and no restart.
    assert after(plan, "gitea", APP_INI, host) == gitea_app_ini()


def test_origins_is_added_to_the_cockpit_conf_websoft9_installs(profile: Profile, host: Host) -> None:
    host.write(COCKPIT_CONF, SHIPPED_COCKPIT_CONF)

    plan = profile.planner().plan(profile.core.config.snapshot(), services=["cockpit"])

    assert after(plan, "cockpit", COCKPIT_CONF, host) == (
        SHIPPED_COCKPIT_CONF + "\nOrigins = http://172.17.0.1:9000 ws://172.17.0.1:9000\n"
    )


def test_gitea_app_ini_keys_change_in_place_and_gitea_restarts(profile: Profile, host: Host) -> None:
    profile.settle()
    original = gitea_app_ini()

    plan = profile.plan_change({"gitea_app": {"root_url": "https://git.example.com/", "domain": "git.example.com",
                                              "app_name": "Example Git", "require_signin_view": "true"}})

    assert changed_services(plan) == {"gitea"}
    expected = swap_line(original, "APP_NAME = Gitea: Git with a cup of tea", "APP_NAME = Example Git")
    expected = swap_line(expected, "ROOT_URL         = http://localhost/w9git/", "ROOT_URL         = https://git.example.com/")
    expected = swap_line(expected, "DOMAIN           = localhost", "DOMAIN           = git.example.com")
    expected = swap_line(expected, "REQUIRE_SIGNIN_VIEW  = false", "REQUIRE_SIGNIN_VIEW  = true")
    rendered = after(plan, "gitea", APP_INI, host)
    assert rendered == expected
    assert rendered.startswith("APP_NAME = Example Git\nRUN_MODE = prod\n\n[repository]\n")
    gitea = plan.services["gitea"]
    assert gitea.level == "restart"
    assert gitea.action == ContainerRestartAction(strategy="container-restart", container="websoft9-git",
                                                  grace=10, timeout=60)


# -- which reload each change gets ---------------------------------------------------------------


def test_a_new_cockpit_port_moves_the_socket_and_reloads_nginx(profile: Profile, host: Host) -> None:
    profile.settle()

    plan = profile.plan_change({"cockpit": {"port": 9091}})

    assert changed_services(plan) == {"cockpit-socket", "proxy"}
    socket = plan.services["cockpit-socket"]
    assert (socket.level, socket.because) == ("restart", ["cockpit.port"])
    assert socket.action == ExecAction(strategy="exec", command=SOCKET_RELOAD, timeout=60)
    assert after(plan, "cockpit-socket", DROP_IN, host).endswith("[Socket]\nListenStream=\nListenStream=9091\n")
    proxy = plan.services["proxy"]
    assert proxy.action == ContainerExecAction(strategy="container-exec", container="websoft9-proxy",
                                               command=NGINX_RELOAD, timeout=30)
    custom_var = swap_line(host.read(CUSTOM_VAR), "set $cockpit_port 9090;", "set $cockpit_port 9091;")
    assert after(plan, "proxy", CUSTOM_VAR, host) == custom_var
    assert [file.changed for file in proxy.files] == [True, False]  # custom_ssl.conf is not rewritten


def test_a_new_docker0_ip_restarts_cockpit_and_reloads_nginx_but_leaves_the_socket(
        profile: Profile, host: Host) -> None:
    profile.settle()
    before = host.read(COCKPIT_CONF)

    plan = profile.plan_change({"nginx_proxy_manager": {"docker0_ip": "172.18.0.1"}})

    # crontab.sh did the same: Origins and `set $docker0_ip`, then restart cockpit and reload nginx.
    assert changed_services(plan) == {"cockpit", "proxy"}
    cockpit = plan.services["cockpit"]
    assert (cockpit.level, cockpit.because) == ("reload", ["nginx_proxy_manager.docker0_ip"])
    assert cockpit.action == ExecAction(strategy="exec", command=COCKPIT_RESTART, timeout=60)
    assert after(plan, "cockpit", COCKPIT_CONF, host) == swap_line(
        before, "Origins = http://172.17.0.1:9000 ws://172.17.0.1:9000",
        "Origins = http://172.18.0.1:9000 ws://172.18.0.1:9000")
    assert plan.services["proxy"].action.strategy == "container-exec"
    assert "set $docker0_ip 172.18.0.1;\n" in after(plan, "proxy", CUSTOM_VAR, host)


def test_new_console_tls_files_reload_only_nginx(profile: Profile, host: Host) -> None:
    profile.settle()

    plan = profile.plan_change({"nginx_proxy_manager": {"ssl_cert": "/data/custom_ssl/console.example.com.pem",
                                                        "ssl_key": "/data/custom_ssl/console.example.com.key"}})

    assert changed_services(plan) == {"proxy"}
    assert plan.services["proxy"].level == "reload"
    assert after(plan, "proxy", CUSTOM_SSL, host).endswith(
        "ssl_certificate /data/custom_ssl/console.example.com.pem;\n"
        "ssl_certificate_key /data/custom_ssl/console.example.com.key;\n")
    assert [file.changed for file in plan.services["proxy"].files] == [False, True]


def test_apphub_plan_shows_the_port_change_per_service(profile: Profile, tmp_path: Path) -> None:
    profile.settle()
    in_step = run_apphub("plan", data=profile.core.data, home=tmp_path / "xdg")
    assert in_step.returncode == 0, in_step.stderr
    assert sorted(in_step.stdout.splitlines()) == [
        "cockpit-socket: unchanged", "cockpit: unchanged", "gitea: unchanged", "proxy: unchanged"]

    result = run_apphub("plan", "--set", "cockpit.port=9091", "--json", data=profile.core.data, home=tmp_path / "xdg")

    assert result.returncode == 0, result.stderr
    services = {entry["service"]: entry for entry in json.loads(result.stdout)["services"]}
    assert {name: (entry["action"], entry["level"]) for name, entry in services.items()} == {
        "cockpit-socket": ("exec", "restart"), "proxy": ("container-exec", "restart"),
        "cockpit": ("none", None), "gitea": ("none", None),
    }
    drop_in_diff = services["cockpit-socket"]["files"][0]["diff"]
    assert "-ListenStream=9090\n+ListenStream=9091\n" in drop_in_diff


# -- the schema guards the files ------------------------------------------------------------------


@pytest.mark.parametrize(("section", "key", "value"), [
    ("nginx_proxy_manager", "ssl_cert", "/data/custom_ssl/a.pem; include /etc/passwd"),
    ("nginx_proxy_manager", "ssl_key", "/data/custom_ssl/$host.key"),
    ("nginx_proxy_manager", "docker0_ip", "fd00::1"),
    ("gitea_app", "root_url", "http://localhost/w9git/#x"),
    ("gitea_app", "app_name", "Git ; RUN_MODE = dev"),
])
def test_a_value_that_would_break_a_target_file_is_refused(profile: Profile, section: str, key: str,
                                                           value: str) -> None:
    before = profile.core.config.snapshot().version

    with pytest.raises(ValidationFailed, match=rf"\[{section}\] {key}.*pattern"):
        profile.core.config.update({section: {key: value}}, ACTOR)

    assert profile.core.config.snapshot().version == before


# -- Cockpit's health probe, run for real -----------------------------------------------------------


class _Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server calls
        body = b'{"service":"cockpit"}' if self.path == "/ping" else b"{}"
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_cockpit() -> Iterator[int]:
    """Cockpit's /ping on a loopback port (only the part of Cockpit the probe talks to)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_cockpit_probe_pings_the_port_of_the_drop_in(profile: Profile, host: Host, fake_cockpit: int) -> None:
    health = profile.manifest.services["cockpit-socket"].health
    assert health is not None
    assert profile.manifest.services["cockpit"].health == health  # both gates ask Cockpit the same way
    probe = CommandProbe()

    assert "no ListenStream port" in (probe.check("cockpit-socket", health) or "")  # no drop-in yet

    profile.core.config.update({"cockpit": {"port": fake_cockpit}}, ACTOR)
    profile.settle()
    assert f"ListenStream={fake_cockpit}\n" in host.read(DROP_IN)
    assert probe.check("cockpit-socket", health) is None

    closed = free_port()
    profile.core.config.update({"cockpit": {"port": closed}}, ACTOR)
    profile.settle()
    reason = probe.check("cockpit-socket", health)
    assert reason is not None
    assert "failed with exit status 7" in reason  # curl's "could not connect"


# -- a port change applied, with the reloads recorded and Cockpit's gate for real ----------------------


class _ContainersUp:
    """The container probe's answer for websoft9-proxy and websoft9-git, which cannot run here."""

    def check(self, service: str, spec: HealthSpec) -> str | None:
        return None


def apply_change(profile: Profile, changes: dict[str, dict[str, object]], reloads: list[tuple[str, Action]],
                 manifest: Manifest | None = None) -> ApplyReport:
    """Plan `changes`, accept them into config.ini and apply the plan as the engine would."""
    manifest = manifest or profile.manifest
    previous = profile.core.config.snapshot()
    profile.core.config.update(changes, ACTOR)
    planner = Planner(manifest, profile.core.data.root / manifest.templates, {})
    plan = planner.plan(profile.core.config.snapshot(), previous=previous)

    def record(service: str, action: Action) -> None:
        reloads.append((service, action))

    database = Database(profile.core.data.database)
    try:
        database.migrate()
        applier = Applier(Reloaders({"exec": record, "container-exec": record, "container-restart": record}),
                          HealthChecker({"command": CommandProbe(), "container": _ContainersUp()}), Journal(database))
        return applier.apply(plan, manifest, dependency_order(manifest))
    finally:
        database.close()


def test_a_port_change_moves_cockpit_first_then_nginx_and_waits_for_cockpit(
        profile: Profile, host: Host, fake_cockpit: int) -> None:
    profile.settle()
    reloads: list[tuple[str, Action]] = []

    report = apply_change(profile, {"cockpit": {"port": fake_cockpit}}, reloads)

    assert report.ok, report
    assert {name: outcome.result for name, outcome in report.outcomes.items()} == {
        "cockpit-socket": "applied", "proxy": "applied", "cockpit": "unchanged", "gitea": "unchanged"}
    assert [(service, action.strategy) for service, action in reloads] == [
        ("cockpit-socket", "exec"), ("proxy", "container-exec")]
    assert host.read(DROP_IN).endswith(f"ListenStream=\nListenStream={fake_cockpit}\n")
    assert f"set $cockpit_port {fake_cockpit};\n" in host.read(CUSTOM_VAR)
    assert report.outcomes["cockpit-socket"].timings["healthy"] >= 0  # the gate asked /ping and got it


def test_a_port_cockpit_does_not_answer_on_gets_the_previous_drop_in_back(
        profile: Profile, host: Host, fake_cockpit: int) -> None:
    profile.core.config.update({"cockpit": {"port": fake_cockpit}}, ACTOR)  # Cockpit answers here now
    profile.settle()
    previous_drop_in = host.read(DROP_IN)
    socket = profile.manifest.services["cockpit-socket"]
    assert socket.health is not None
    # The shipped gate waits 30 s; one second is enough to see nothing answer on a closed port.
    quick = socket.model_copy(update={"health": socket.health.model_copy(update={"timeout": 1.0})})
    manifest = profile.manifest.model_copy(update={"services": {**profile.manifest.services, "cockpit-socket": quick}})
    reloads: list[tuple[str, Action]] = []

    report = apply_change(profile, {"cockpit": {"port": free_port()}}, reloads, manifest)

    outcome = report.outcomes["cockpit-socket"]
    assert outcome.result == "failed"
    assert outcome.error is not None
    assert "did not become healthy within 1 s" in outcome.error
    assert "did not come back" not in outcome.error  # the old port answered /ping again
    assert host.read(DROP_IN) == previous_drop_in
    # Reloaded with the new drop-in, then again with the old one.
    assert [action for service, action in reloads if service == "cockpit-socket"] == [
        ExecAction(strategy="exec", command=SOCKET_RELOAD, timeout=60)] * 2
