"""Regression: CLI commands that print decrypted secrets left no trace in the audit log.

`config get`, Websoft9's `getconfig`, `getkey` and `getallconfig` print secrets in plaintext; each
now records a `secrets.reveal` event (actor cli) naming the keys shown, and never a version the
file was left at. A command that shows no secret records nothing.
"""

from __future__ import annotations

import pytest

from apphub.paths import DataDir
from tests.regressions.conftest import Cli, events, last_event_id

CONFIG_SECRETS = {("nginx_proxy_manager", "user_pwd"), ("gitea", "user_pwd"), ("portainer", "user_pwd"),
                  ("api_key", "key")}


REVEALING = [
    (("config", "get", "gitea", "user_pwd"), {("gitea", "user_pwd")}),
    (("config", "show", "gitea", "--reveal"), {("gitea", "user_pwd")}),
    (("getconfig", "--section", "gitea"), {("gitea", "user_pwd")}),
    (("getconfig", "--section", "portainer", "--key", "user_pwd"), {("portainer", "user_pwd")}),
    (("getkey",), {("api_key", "key")}),
    (("getallconfig",), CONFIG_SECRETS),
]


@pytest.mark.parametrize(("command", "shown"), [pytest.param(c, s, id=" ".join(c)) for c, s in REVEALING])
def test_a_cli_read_that_prints_secrets_is_audited(data_dir: DataDir, cli: Cli, command: tuple[str, ...],
                                                   shown: set[tuple[str, str]]) -> None:
    last = last_event_id(data_dir)

    result = cli(*command)

    assert result.returncode == 0, result.stderr
    recorded = events(data_dir, after=last)
    assert {e.action for e in recorded} == {"secrets.reveal"}
    assert {(e.actor, e.source) for e in recorded} == {("cli", "cli")}
    config_events = [e for e in recorded if e.file == "config.ini"]
    assert len(config_events) == 1
    assert config_events[0].keys == shown
    assert {change[2] for change in config_events[0].changes} == {"reveal"}
    assert all(change[3] is None and change[4] is None for e in recorded for change in e.changes)  # no values
    assert all(e.version_after is None for e in recorded)  # a read leaves no version behind


@pytest.mark.parametrize("command", [
    ("config", "get", "gitea", "user_name"),
    ("getconfig", "--section", "gitea", "--key", "user_name"),
    ("config", "show", "gitea"),
])
def test_a_cli_read_that_prints_no_secret_records_nothing(data_dir: DataDir, cli: Cli,
                                                          command: tuple[str, ...]) -> None:
    last = last_event_id(data_dir)

    result = cli(*command)

    assert result.returncode == 0, result.stderr
    assert events(data_dir, after=last) == []
