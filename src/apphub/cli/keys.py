"""`apphub keys create|list|revoke` (named API keys) and `apphub secrets rotate` (encryption key)."""

from __future__ import annotations

import json
from typing import cast

import click

from apphub.audit.log import Change
from apphub.cli.context import CLI_ACTOR, data_of, open_core
from apphub.core import Core
from apphub.keys import ROLES, Role
from apphub.store.secrets import SecretBox


@click.group()
def keys() -> None:
    """Named API keys: each has a role (read, write, admin) and is stored hashed."""


@keys.command("create")
@click.option("--name", required=True, help="A name for the key; it is the actor in the audit log.")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the key may do.")
@click.option("--service", default=None, metavar="SERVICE",
              help="The key reads only this service's configuration (for its init-config.sh); needs --role read.")
@click.pass_context
def create(ctx: click.Context, name: str, role: str, service: str | None) -> None:
    """Create a key and print it (only the key, once: it is stored only as a hash)."""
    with open_core(ctx) as core:
        key = create_key(core, name, cast(Role, role), service)
    click.echo(key)


def create_key(core: Core, name: str, role: Role, service: str | None = None) -> str:
    key = core.keys.create(name, role, service=service)
    granted = role if service is None else f"{role} of service {service}"
    core.audit.record(CLI_ACTOR, "apikey.create", [Change("api_keys", name, "add", None, granted)])
    return key


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List the keys: name, role, creation time (never the keys themselves)."""
    with open_core(ctx) as core:
        found = core.keys.list()
    if as_json:
        click.echo(json.dumps([{"name": k.name, "role": k.role, "service": k.service, "created_at": k.created_at}
                               for k in found], indent=2))
        return
    width = max((len(k.name) for k in found), default=4)
    click.echo(f"{'NAME':<{width}}  ROLE   CREATED               SERVICE")
    for key in found:
        click.echo(f"{key.name:<{width}}  {key.role:<5}  {key.created_at}  {key.service or ''}".rstrip())


@keys.command("revoke")
@click.argument("name")
@click.pass_context
def revoke(ctx: click.Context, name: str) -> None:
    """Revoke a key; requests with it fail from now on."""
    with open_core(ctx) as core:
        core.keys.revoke(name)
        core.audit.record(CLI_ACTOR, "apikey.revoke", [Change("api_keys", name, "delete")])
    click.echo(f"revoked {name}")


@click.group()
def secrets() -> None:
    """The encryption key of secrets at rest."""


@secrets.command("rotate")
@click.pass_context
def rotate(ctx: click.Context) -> None:
    """Add a new encryption key and re-encrypt every secret with it.

    Older keys stay in the key file so that older versions can still be decrypted.
    """
    data = data_of(ctx)
    SecretBox.add_primary_key(data.secret_key)
    with open_core(ctx) as core:
        count = 0
        for store in (core.config, core.system):
            count += len(store.reencrypt_secrets(CLI_ACTOR, only_plaintext=False).changes)
    click.echo(f"re-encrypted {count} secret(s) with a new key; {data.secret_key} holds {core.box.key_count} key(s)")


COMMANDS = [keys, secrets]
