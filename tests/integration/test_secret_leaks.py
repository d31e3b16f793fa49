"""After many writes of secrets through every door, their plaintext is nowhere it should not be.

Not in config.ini or system.ini, not in any API response (but `?reveal=true` for an admin), not in
the audit database (apphub.db and its -wal and -shm files, read as raw bytes: the notifications'
outbox too), not in the server's debug log (whose access log sees Websoft9's `?value=`), not in
any notification a webhook, Slack, Discord or WeCom receiver got, and not in error responses for
secrets that fail validation. The destinations' own credentials (a chat URL's token, a webhook's
signing secret) are searched for the same way. Each secret carries a random hex marker, so the search finds it under any
encoding (URL, JSON) as well.
"""

from __future__ import annotations

import contextlib
import json
import secrets as random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from apphub.audit.log import Actor
from apphub.bootstrap import initialise
from apphub.core import Core
from apphub.paths import DataDir
from apphub.store.secrets import MASK
from tests.integration.conftest import ServeProcess, StartServe, assert_stops_cleanly, eventually, run_cli
from tests.notify.receivers import DiscordReceiver, Receiver, SlackReceiver, WebhookReceiver, WeComReceiver
from tests.sync.conftest import fragments, make_secret, settle_api


@dataclass
class Evidence:
    """Every secret used, and every place that must not hold one."""

    markers: list[str] = field(default_factory=list)
    responses: list[tuple[str, bytes]] = field(default_factory=list)
    cli_outputs: list[tuple[str, str]] = field(default_factory=list)

    def secret(self, template: str = "Pw-{}-secret") -> str:
        """A new secret value whose marker (16 random hex digits) is searched for afterwards."""
        marker = random.token_hex(8)
        self.markers.append(marker)
        return template.format(marker)

    def short(self, prefix: str) -> str:
        """A secret of 9 characters, too short for a password (its marker is 8 hex digits)."""
        marker = random.token_hex(4)
        self.markers.append(marker)
        return prefix + marker

    def known(self, value: str) -> None:
        self.markers.append(value)

    def response(self, response: httpx.Response) -> httpx.Response:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode()
        self.responses.append((f"{response.request.method} {response.request.url}", headers + b"\n" + response.content))
        return response

    def cli(self, data: DataDir, *args: str) -> subprocess.CompletedProcess[str]:
        result = run_cli(data, *args)
        self.cli_outputs.append((" ".join(args[:3]), result.stdout + result.stderr))
        return result


def leaks(evidence: Evidence, places: dict[str, bytes]) -> list[str]:
    found = []
    for marker in evidence.markers:
        for name, content in places.items():
            if marker.encode() in content:
                found.append(f"{marker} in {name}")
    return found


def state_files(data: DataDir) -> dict[str, bytes]:
    files = {"config.ini": data.config_ini.read_bytes(), "system.ini": data.system_ini.read_bytes()}
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{data.database}{suffix}")
        if path.exists():
            files[path.name] = path.read_bytes()
    return files


def current_secrets(data: DataDir) -> dict[tuple[str, str], str]:
    core = Core(data)
    try:
        snapshot = core.config.snapshot()
        return {(section, key): snapshot.section_plaintext_value(section, key)
                for section, key in snapshot.secret_keys()}
    finally:
        core.close()


@pytest.fixture
def evidence(data_dir: DataDir) -> Evidence:
    found = Evidence()
    for value in current_secrets(data_dir).values():
        found.known(value)  # the credentials generated on first start are secrets too
    return found


@pytest.fixture
def debug_server(data_dir: DataDir, serve: StartServe) -> ServeProcess:
    return serve(data_dir, log_level="debug")


def add_destinations(admin: httpx.Client, evidence: Evidence, receivers: dict[str, Receiver]) -> None:
    """One destination of each kind, its URL holding a token (a chat webhook's URL is its credential)."""
    for kind, receiver in receivers.items():
        token = evidence.secret("tok{}")
        added = admin.post("/api/v1/notifications/destinations", json={
            "name": kind, "kind": kind, "url": f"{receiver.url}?token={token}",
            "events": ["settings.changed", "settings.rolled_back", "settings.refused", "notify.test"]})
        assert added.status_code == 201, added.text  # not recorded: a webhook's secret is shown here, once
        if "secret" in added.json():
            evidence.known(added.json()["secret"])
            assert isinstance(receiver, WebhookReceiver)
            receiver.secret = added.json()["secret"]


def notifications_sent(admin: httpx.Client, receivers: dict[str, Receiver]) -> dict[str, bytes]:
    """Every request each receiver got, once nothing is pending."""
    def settled() -> bool:
        found = admin.get("/api/v1/notifications/deliveries", params={"limit": 500}).json()["deliveries"]
        return bool(found) and all(delivery["state"] == "delivered" for delivery in found)

    eventually(settled, "every notification delivered", 60)
    sent = {}
    for kind, receiver in receivers.items():
        assert receiver.got, f"{kind} got no notification"
        assert receiver.problems == [], f"{kind}: {receiver.problems}"
        for number, request in enumerate(receiver.got):
            headers = "\n".join(f"{name}: {value}" for name, value in request.headers.items())
            sent[f"notification {number} to {kind}"] = headers.encode() + b"\n" + request.body
    return sent


def test_secrets_written_through_every_door_appear_nowhere_else(
    data_dir: DataDir, debug_server: ServeProcess, admin_key: str, evidence: Evidence
) -> None:
    receivers: dict[str, Receiver] = {"webhook": WebhookReceiver(), "slack": SlackReceiver(),
                                      "discord": DiscordReceiver(), "wecom": WeComReceiver()}
    with contextlib.ExitStack() as stack:
        for receiver in receivers.values():
            stack.enter_context(receiver)
        _write_secrets_through_every_door(data_dir, debug_server, admin_key, evidence, receivers)


def _write_secrets_through_every_door(data_dir: DataDir, server: ServeProcess, admin_key: str,
                                      evidence: Evidence, receivers: dict[str, Receiver]) -> None:
    # keys create prints the new key by design; its output is not a place that must not hold it.
    writer_key = run_cli(data_dir, "keys", "create", "--name", "writer", "--role", "write").stdout.strip()
    evidence.known(writer_key)
    record = evidence.response
    with server.client(admin_key) as admin, server.client(writer_key) as writer:
        add_destinations(admin, evidence, receivers)
        for round_number in range(6):
            one = evidence.secret()
            assert record(admin.put("/api/v1/settings/gitea", json={"user_pwd": one})).status_code == 200
            special = evidence.secret("p@ss w0rd/{}+&=%?#")
            assert record(writer.put("/api/v1/settings/nginx_proxy_manager",
                                     json={"user_pwd": special})).status_code == 200
            legacy = evidence.secret("Legacy-{}-pwd")
            assert record(admin.put("/api/settings/portainer",
                                    params={"key": "user_pwd", "value": legacy})).status_code == 200
            legacy_special = evidence.secret("L&gacy={}?x=1 +")
            assert record(writer.put("/api/settings/gitea",
                                     params={"key": "user_pwd", "value": legacy_special})).status_code == 200
            batch_one, batch_two = evidence.secret(), evidence.secret("Batch-{}-portainer")
            batch = record(admin.put("/api/v1/settings", json={
                "gitea": {"user_pwd": batch_one, "user_email": f"r{round_number}@example.com"},
                "portainer": {"user_pwd": batch_two}}))
            assert batch.status_code == 200
            # Sending the mask back keeps the value; a PUT of the same section echoes only masks.
            assert record(admin.put("/api/v1/settings/gitea", json={"user_pwd": MASK})).status_code == 200
            for path in ("/api/v1/settings", "/api/v1/settings/gitea", "/api/settings", "/api/settings/portainer",
                         "/api/v1/system", "/api/v1/audit?limit=500", "/openapi.json"):
                assert record(writer.get(path)).status_code == 200, path

        cli_secret = evidence.secret("Cli-{}-set")
        assert evidence.cli(data_dir, "config", "set", "portainer", "user_pwd", cli_secret).returncode == 0
        setconfig_secret = evidence.secret("Setconfig-{}")
        assert evidence.cli(data_dir, "setconfig", "--section", "gitea", "--key", "user_pwd",
                            "--value", setconfig_secret).returncode == 0
        webhook = evidence.secret("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={}")
        assert evidence.cli(data_dir, "setsysconfig", "--section", "webhook", "--key", "wechat",
                            "--value", webhook).returncode == 0
        generated = run_cli(data_dir, "genkey")  # prints the key by design (Websoft9's clients read it)
        assert generated.returncode == 0
        legacy_key = generated.stdout.strip()
        evidence.known(legacy_key)
        assert evidence.cli(data_dir, "config", "show").returncode == 0
        assert evidence.cli(data_dir, "check").returncode == 0

        with server.client(legacy_key) as websoft9:
            assert record(websoft9.get("/api/settings")).status_code == 200
            after_genkey = evidence.secret("After-genkey-{}")
            assert record(websoft9.put("/api/settings/gitea",
                                       params={"key": "user_pwd", "value": after_genkey})).status_code == 200

        # An admin may reveal; these answers are the one place the plaintext belongs (not recorded).
        revealed = admin.get("/api/v1/settings", params={"reveal": "true"})
        assert revealed.status_code == 200
        assert revealed.json()["settings"]["gitea"]["user_pwd"] == after_genkey
        assert revealed.json()["settings"]["api_key"]["key"] == legacy_key
        system_revealed = admin.get("/api/v1/system/webhook", params={"reveal": "true"})
        assert system_revealed.json()["settings"]["wechat"] == webhook
        assert record(writer.get("/api/v1/settings", params={"reveal": "true"})).status_code == 403
        for path in ("/api/v1/notifications/destinations", "/api/v1/notifications/deliveries?limit=500",
                     "/api/v1/notifications/deliveries/1"):
            assert record(admin.get(path)).status_code == 200, path
        assert evidence.cli(data_dir, "notify", "list").returncode == 0
        assert evidence.cli(data_dir, "notify", "deliveries", "--limit", "500").returncode == 0
        sent = notifications_sent(admin, receivers)

    assert current_secrets(data_dir)[("portainer", "user_pwd")] == cli_secret

    places = state_files(data_dir)
    assert "apphub.db-wal" in places, "read the WAL while the server holds the database open"
    places.update({f"response to {name}": body for name, body in evidence.responses})
    places.update({f"output of apphub {name}": out.encode() for name, out in evidence.cli_outputs})
    places.update(sent)
    assert_stops_cleanly(server)
    places.update({"server log": server.logs()})
    places.update({f"{name} after stop": content for name, content in state_files(data_dir).items()})

    assert b'PUT /api/settings/portainer?key=user_pwd&value=********' in places["server log"], (
        "the access log should show the legacy PUT with its value masked")
    assert leaks(evidence, places) == []
    # The search itself works: the markers are where they belong.
    assert leaks(evidence, {"reveal": revealed.content}) != []


def test_rejected_secrets_are_not_echoed_in_errors_or_logs(
    data_dir: DataDir, debug_server: ServeProcess, admin_key: str, evidence: Evidence
) -> None:
    server = debug_server
    record = evidence.response
    before = data_dir.config_ini.read_bytes()
    with server.client(admin_key) as admin:
        refusals = [
            # Too short (portainer asks for 12 characters).
            (admin.put("/api/v1/settings/portainer", json={"user_pwd": evidence.short("S")}), 422),
            (admin.put("/api/settings/portainer", params={"key": "user_pwd", "value": evidence.short("T")}),
             400),
            (admin.put("/api/v1/settings", json={"portainer": {"user_pwd": evidence.short("U")}}), 422),
            # Too long, control characters, blanks at the ends.
            (admin.put("/api/v1/settings/gitea", json={"user_pwd": evidence.secret("Long-{}-") + "x" * 300}), 422),
            (admin.put("/api/v1/settings/gitea", json={"user_pwd": evidence.secret("Ctl-{}\u0001-pwd")}), 422),
            (admin.put("/api/settings/gitea", params={"key": "user_pwd", "value": evidence.secret(" Blank-{} ")}),
             400),
            # Wrong types, with the secret inside.
            (admin.put("/api/v1/settings/gitea", json={"user_pwd": [evidence.secret()]}), 422),
            (admin.put("/api/v1/settings/gitea", json={"user_pwd": {"nested": evidence.secret()}}), 422),
            (admin.put("/api/v1/settings", json={"gitea": evidence.secret("Not-an-object-{}")}), 400),
            # A good secret in a write that fails for another reason.
            (admin.put("/api/v1/settings/gitea", json={"user_pwd": evidence.secret("Good-{}-pwd"), "colour": 1}),
             422),
            (admin.put("/api/v1/settings/gitea", json={"user_pwd": evidence.secret("Good-{}-pwd")},
                       headers={"If-Match": '"0123456789abcdef0123456789abcdef"'}), 412),
            # The Websoft9 key has a pattern; a key that breaks it is still a secret.
            (admin.put("/api/settings/api_key", params={"key": "key", "value": evidence.secret("bad key {} !")}), 400),
            # A key or section that does not exist, with a secret as the value.
            (admin.put("/api/settings/gitea", params={"key": "nope", "value": evidence.secret()}), 400),
            (admin.put("/api/settings/nope", params={"key": "user_pwd", "value": evidence.secret()}), 400),
            # Malformed JSON that holds a secret.
            (admin.put("/api/v1/settings/gitea", content=b'{"user_pwd": "' + evidence.secret().encode(),
                       headers={"content-type": "application/json"}), 400),
        ]
        # A secret sent as the API key itself.
        with server.client(evidence.secret("Wrong-key-{}")) as stranger:
            refusals.append((stranger.put("/api/settings/gitea", params={"key": "user_pwd", "value": "whatever1"}),
                             400))
            refusals.append((stranger.get("/api/v1/settings"), 401))
    for response, status in refusals:
        record(response)
        assert response.status_code == status, (response.request.url, response.text)
    assert data_dir.config_ini.read_bytes() == before

    # The same through the CLI.
    assert evidence.cli(data_dir, "config", "set", "portainer", "user_pwd", evidence.short("C")).returncode == 1
    assert evidence.cli(data_dir, "setconfig", "--section", "gitea", "--key", "user_pwd",
                        "--value", evidence.secret(" Lead-{}")).returncode == 1
    assert data_dir.config_ini.read_bytes() == before

    assert_stops_cleanly(server)
    places = state_files(data_dir)
    places.update({f"response to {name}": body for name, body in evidence.responses})
    places.update({f"output of apphub {name}": out.encode() for name, out in evidence.cli_outputs})
    places["server log"] = server.logs()
    assert leaks(evidence, places) == []


# -- a secret a failing service prints (issue 8) ------------------------------------------------------

LEAK_SCHEMA = """\
config:
  sections:
    leak:
      keys:
        exec_pw: {type: string, secret: true, apply: restart}
        probe_pw: {type: string, secret: true, apply: restart}
"""
CAT = 'cat "$0" >&2; exit 1'


def test_a_secret_a_failing_service_prints_leaves_no_fragment_in_the_servers_log_or_answers(
    tmp_path: Path, serve: StartServe
) -> None:
    """A real `apphub serve` at log level debug. Two services print their file, which holds a secret,
    when they fail: through an exec reload (whose output was cut to its last 600 characters) and
    through a command health probe (whose reason was cut to 299). Each secret lies across that cut;
    no 4 characters of it in a row may appear in the server's log, the ?wait=true answer, the
    status or the audit log (4: shorter runs of a 7-letter alphabet occur by chance)."""
    data = DataDir(tmp_path / "data")
    data.schema_dir.mkdir(parents=True)
    (data.schema_dir / "50-leak.yaml").write_text(LEAK_SCHEMA, encoding="utf-8")
    initialise(data)
    root = tmp_path / "srv"
    (root / "exec").mkdir(parents=True)
    (root / "probe").mkdir()
    exec_file, probe_file = root / "exec" / "out.txt", root / "probe" / "out.txt"
    probe_command = ["sh", "-c", CAT, str(probe_file)]
    probe_prefix = len(f"command `{' '.join(probe_command)}` failed with exit status 1: ")
    (data.root / "templates").mkdir()
    # the exec secret keeps 10 of its 24 characters after the 600th from the end; the probe's, 10 before the 299th
    (data.root / "templates" / "exec.j2").write_text("a" * 30 + "{{ settings.leak.exec_pw }}" + "b" * (600 - 10))
    (data.root / "templates" / "probe.j2").write_text("a" * (299 - probe_prefix - 10)
                                                       + "{{ settings.leak.probe_pw }}" + "b" * 30)
    secrets = [make_secret(24) for _ in range(4)]
    core = Core(data)
    try:
        core.system.update({"sync": {"roots": [str(root)]}}, Actor("test", "cli"))
        core.config.update({"leak": {"exec_pw": secrets[0], "probe_pw": secrets[1]}}, Actor("test", "cli"))
    finally:
        core.close()
    (data.root / "services.yaml").write_text(json.dumps({"services": {
        "exec": {"files": [{"path": str(exec_file), "template": "exec.j2"}],
                 "reload": {"strategy": "exec", "command": ["sh", "-c", CAT, str(exec_file)]}},
        "probe": {"files": [{"path": str(probe_file), "template": "probe.j2"}],
                  "health": {"command": probe_command, "timeout": 0.3, "interval": 0.05}},
    }}), encoding="utf-8")

    server = serve(data, log_level="debug")
    admin_key = data.admin_key.read_text().strip()
    places: dict[str, bytes] = {}
    with server.client(admin_key) as admin:
        eventually(lambda: admin.get("/api/v1/sync/status").json()["engine"]["syncs"] >= 1, "the first sync", 30)
        settle_api(admin)  # the rounds of the first sync's file events are over: none races the write
        answer = admin.put("/api/v1/settings/leak?wait=true", json={"exec_pw": secrets[2], "probe_pw": secrets[3]})
        assert answer.status_code == 200, answer.text
        results = {s["service"]: s["result"] for s in answer.json()["sync"]["services"]}
        assert results == {"exec": "failed", "probe": "failed"}, answer.text
        places["the ?wait=true answer"] = json.dumps(answer.json(), ensure_ascii=False).encode()
        status = admin.get("/api/v1/sync/status").json()
        assert "bbbb" in status["services"][0]["last_error"], "the failures quote the services' output"
        places["/api/v1/sync/status"] = json.dumps(status, ensure_ascii=False).encode()
        places["/api/v1/audit"] = json.dumps(admin.get("/api/v1/audit", params={"limit": 500}).json(),
                                             ensure_ascii=False).encode()
    assert_stops_cleanly(server)
    places["server log"] = server.logs()
    assert b"service exec: failed" in places["server log"]
    found = [f"{fragments(secret, text.decode(errors='replace'))} of secret {number} in {place}"
             for number, secret in enumerate(secrets) for place, text in places.items()
             if fragments(secret, text.decode(errors="replace"))]
    assert found == []
