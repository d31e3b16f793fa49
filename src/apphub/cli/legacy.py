"""Websoft9's commands, with its semantics and output (reference/websoft9-apphub.md §6).

Its Cockpit plugins run `apphub getconfig --section gitea` as root next to the files and read the
passwords from the JSON for single sign-on, so these commands print secrets decrypted, as
Websoft9's did; the HTTP API never does.
"""

from __future__ import annotations

import json
import secrets as random
from typing import Any

import click

from apphub.cli.context import CLI_ACTOR, open_core
from apphub.core import Core
from apphub.errors import KeyNotFound, SectionNotFound
from apphub.keys import WEBSOFT9_KEY
from apphub.store.inistore import IniStore
from apphub.store.secrets import mask

LEGACY_KEY_SECTION, LEGACY_KEY_NAME = WEBSOFT9_KEY


def _dump(value: Any) -> str:
    return json.dumps(value)


def _get(core: Core, store: IniStore, section: str | None, key: str | None) -> Any:
    """What Websoft9's get commands print (decrypted), recording which secrets it shows."""
    snapshot = store.snapshot()
    shown = [(s, k) for s, k in snapshot.secret_keys() if section in (None, s) and key in (None, k)]
    if section is None:
        value: Any = snapshot.plaintext_values()
    elif key is None:
        value = snapshot.section_plaintext(section) if snapshot.document.has_section(section) else {}
    else:
        try:
            value = snapshot.section_plaintext_value(section, key)
        except (SectionNotFound, KeyNotFound):
            value = ""
    core.audit.record_reveal(CLI_ACTOR, store.name, snapshot.version, shown)
    return value


def _echo(value: Any) -> None:
    click.echo(value if isinstance(value, str) else _dump(value))


@click.command()
@click.option("--section", help="The section to print (JSON).")
@click.option("--key", help="With --section: the key whose raw value to print.")
@click.pass_context
def getconfig(ctx: click.Context, section: str | None, key: str | None) -> None:
    """Websoft9: print config.ini as JSON, one section as JSON, or one raw value."""
    with open_core(ctx) as core:
        _echo(_get(core, core.config, section, key))


@click.command()
@click.option("--section", help="The section to print (JSON).")
@click.option("--key", help="With --section: the key whose raw value to print.")
@click.pass_context
def getsysconfig(ctx: click.Context, section: str | None, key: str | None) -> None:
    """Websoft9: print system.ini as JSON, one section as JSON, or one raw value."""
    with open_core(ctx) as core:
        _echo(_get(core, core.system, section, key))


@click.command()
@click.pass_context
def getallconfig(ctx: click.Context) -> None:
    """Websoft9: print {"config": ..., "system": ...} as JSON."""
    with open_core(ctx) as core:
        _echo({"config": _get(core, core.config, None, None), "system": _get(core, core.system, None, None)})


@click.command()
@click.option("--section", required=True, help="An existing section of config.ini.")
@click.option("--key", required=True, help="An existing key of that section.")
@click.option("--value", required=True, help="Its new value.")
@click.pass_context
def setconfig(ctx: click.Context, section: str, key: str, value: str) -> None:
    """Websoft9: set an existing key of config.ini (validated and audited); prints nothing."""
    with open_core(ctx) as core:
        try:
            core.config.update({section: {key: value}}, CLI_ACTOR, existing_only=True)
        except SectionNotFound as exc:
            raise click.ClickException(f"Section:{exc.section} does not exist") from exc
        except KeyNotFound as exc:
            raise click.ClickException(f"Key:{exc.key} does not exist") from exc


@click.command()
@click.option("--section", required=True, help="A section of system.ini (created if missing).")
@click.option("--key", required=True, help="A key of that section (created if missing).")
@click.option("--value", required=True, help="Its new value.")
@click.pass_context
def setsysconfig(ctx: click.Context, section: str, key: str, value: str) -> None:
    """Websoft9: set a key of system.ini, adding the section and key if needed."""
    with open_core(ctx) as core:
        core.system.update({section: {key: value}}, CLI_ACTOR, action="system.update")
        shown = mask(value) if core.system.schema.is_secret(section, key) else value
    click.echo(f"Set [{section}] {key}={shown} in system.ini successfully.")


@click.command()
@click.pass_context
def genkey(ctx: click.Context) -> None:
    """Websoft9: replace the API key in [api_key] key with a new one and print it."""
    key = random.token_hex(32)
    with open_core(ctx) as core:
        core.config.update({LEGACY_KEY_SECTION: {LEGACY_KEY_NAME: key}}, CLI_ACTOR, action="apikey.legacy_regenerate")
    click.echo(key)


@click.command()
@click.pass_context
def getkey(ctx: click.Context) -> None:
    """Websoft9: print the API key of [api_key] key."""
    with open_core(ctx) as core:
        _echo(_get(core, core.config, LEGACY_KEY_SECTION, LEGACY_KEY_NAME))


COMMANDS = [getconfig, setconfig, getsysconfig, setsysconfig, getallconfig, genkey, getkey]
