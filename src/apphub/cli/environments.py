"""`apphub environments list|show|set|unset|diff|promote|use`: config.ini's overlays."""

from __future__ import annotations

import json

import click

from apphub.cli.context import CLI_ACTOR, open_core
from apphub.environments.compare import diff, promote
from apphub.environments.overlays import ACTIVE, BASE, check_name
from apphub.errors import FieldError, ValidationFailed
from apphub.store.inistore import WriteResult
from apphub.store.schema import parse_reference
from apphub.store.secrets import MASK


@click.group()
def environments() -> None:
    """Environments: config.ini as the base, and per environment an overlay of what differs."""


@environments.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Every environment, how many keys its overlay sets, and which one runs (*)."""
    with open_core(ctx) as core:
        active = core.environments.active()
        click.echo(f"{'*' if active is None else ' '} base  (config.ini)")
        for name in core.environments.names():
            overlay = core.environments.store(name).snapshot()
            keys = sum(len(overlay.document.items(section)) for section in overlay.sections())
            click.echo(f"{'*' if name == active else ' '} {name}  ({overlay.name}, {keys} keys)")


@environments.command("show")
@click.argument("name")
@click.pass_context
def show(ctx: click.Context, name: str) -> None:
    """The overlay of NAME: only what differs from config.ini (secrets masked)."""
    with open_core(ctx) as core:
        snapshot = core.environments.store(name).snapshot()
    for section, values in snapshot.public.items():
        click.echo(f"[{section}]")
        for key, value in values.items():
            click.echo(f"{key} = {value}")


@environments.command("set")
@click.argument("name")
@click.argument("section")
@click.argument("key")
@click.argument("value")
@click.option("--message", help="Why (kept in the audit log).")
@click.pass_context
def set_(ctx: click.Context, name: str, section: str, key: str, value: str, message: str | None) -> None:
    """Set SECTION KEY in NAME's overlay (made on first use), validated as the merge it makes."""
    with open_core(ctx) as core:
        result = core.environments.update(name, {section: {key: value}}, CLI_ACTOR, message=message)
        secret = core.environments.store(name).schema.is_secret(section, key)
    _report(result, f"[{section}] {key} = {MASK if secret else value} in {name}")


@environments.command("unset")
@click.argument("name")
@click.argument("section")
@click.argument("key")
@click.pass_context
def unset(ctx: click.Context, name: str, section: str, key: str) -> None:
    """Drop SECTION KEY from NAME's overlay: config.ini's value applies again there."""
    with open_core(ctx) as core:
        result = core.environments.store(name).update({}, CLI_ACTOR, deletes=[(section, key)],
                                                      action="environments.delete")
    _report(result, f"[{section}] {key} dropped from {name}")


@environments.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as GET /api/v1/environments/diff).")
@click.pass_context
def diff_(ctx: click.Context, a: str, b: str, as_json: bool) -> None:
    """Where the effective settings of A and B differ (base: config.ini alone). Secrets are said to
    differ, never shown."""
    with open_core(ctx) as core:
        differences = diff(core.environments, a, b)
    if as_json:
        click.echo(json.dumps({"a": a, "b": b, "differences": [d.as_dict() for d in differences]}, indent=2))
        return
    for found in differences:
        if found.secret:
            click.echo(f"[{found.section}] {found.key}: (secret) differs  ({found.a.origin} / {found.b.origin})")
        else:
            click.echo(f"[{found.section}] {found.key}: {found.a.value!r} ({found.a.origin}) / "
                       f"{found.b.value!r} ({found.b.origin})")
    if not differences:
        click.echo(f"{a} and {b} have the same effective settings")


@environments.command("promote")
@click.argument("source")
@click.argument("target")
@click.option("--key", "keys", multiple=True, help="section.key to copy (repeat); none: every key that differs.")
@click.option("--message", help="Why (kept in the audit log).")
@click.pass_context
def promote_(ctx: click.Context, source: str, target: str, keys: tuple[str, ...], message: str | None) -> None:
    """Copy keys as written in SOURCE into TARGET's file (base: config.ini): one validated, audited write."""
    wanted = [_key(text) for text in keys] if keys else None
    with open_core(ctx) as core:
        result = promote(core.environments, source, target, wanted, CLI_ACTOR, message=message)
    _report(result, f"{len(result.changes)} change(s) promoted from {source} to {target}")


@environments.command("use")
@click.argument("name")
@click.pass_context
def use(ctx: click.Context, name: str) -> None:
    """Run NAME on this host (base: config.ini alone): system.ini [environments] active."""
    with open_core(ctx) as core:
        if name != BASE:
            core.environments.store(check_name(name))  # refuses an unknown one
        result = core.system.update({ACTIVE[0]: {ACTIVE[1]: "" if name == BASE else name}}, CLI_ACTOR,
                                    message=f"run the environment {name}")
    _report(result, f"this host runs {name}")


def _key(text: str) -> tuple[str, str]:
    found = parse_reference(text)
    if found is None:
        raise ValidationFailed([FieldError("environments", None, "promote", f"{text!r} does not name a key as "
                                           "section.key", file="environments")])
    return found


def _report(result: WriteResult, done: str) -> None:
    click.echo(f"{done}  (version {result.snapshot.version})" if result.changed else "nothing changed")
    for warning in result.warnings:
        click.echo(str(warning), err=True)


COMMANDS = [environments]
