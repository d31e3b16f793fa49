"""`apphub env list|get|set|unset`: the environment variables, as the API sees them."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from apphub.cli.context import CLI_ACTOR, open_core
from apphub.envvars.store import FILE, EnvValue


@click.group()
def env() -> None:
    """Environment variables: independent ones (env.ini) and mapped ones (services.yaml `env:`)."""


@env.command("list")
@click.argument("scope", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_(ctx: click.Context, scope: str | None, as_json: bool) -> None:
    """Every scope (or one) with each variable's kind and source; secrets masked."""
    with open_core(ctx) as core:
        scopes = {scope: core.envvars.scope(scope)} if scope else core.envvars.listing().scopes
    if as_json:
        click.echo(json.dumps(scopes, indent=2))
        return
    blocks = []
    for name, found in scopes.items():
        lines = [f"[{name}]" + ("" if found.get("service") is not False else "  (no service takes it)")]
        lines += [_line(var) for var in found["variables"]]
        lines += [f"  error: {error}" for error in found.get("errors") or []]
        blocks.append("\n".join(lines))
    click.echo("\n\n".join(blocks))


@env.command("get")
@click.argument("scope")
@click.argument("name")
@click.option("--reveal", is_flag=True, help="Print a secret in plaintext (audited).")
@click.pass_context
def get(ctx: click.Context, scope: str, name: str, reveal: bool) -> None:
    """Print one variable's value as the service gets it (exit 1 if it has none)."""
    with open_core(ctx) as core:
        found = core.envvars.scope(scope, reveal=reveal)
        variable = next((var for var in found["variables"] if var["name"] == name), None)
        if variable is None:
            raise click.ClickException(f"{scope} has no variable {name}")
        if reveal and variable["secret"]:
            core.audit.record_reveal(CLI_ACTOR, FILE, found["version"], [(scope, name)])
    click.echo(variable["value"])


@env.command("set")
@click.argument("scope")
@click.argument("name")
@click.argument("value", required=False)
@click.option("--secret", is_flag=True, help="Store it encrypted and never show it.")
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Read the value from standard input (a secret then never appears in the process list).")
@click.option("--message", help="Why (kept in the audit log and as the history's commit message).")
@click.pass_context
def set_(ctx: click.Context, scope: str, name: str, value: str | None, secret: bool, from_stdin: bool,
         message: str | None) -> None:
    """Set one independent variable of SCOPE (`global` or a service)."""
    if from_stdin == (value is not None):
        raise click.UsageError("give the VALUE or --stdin, not both nor neither")
    text = sys.stdin.read().removesuffix("\n") if from_stdin else value
    assert text is not None
    with open_core(ctx) as core:
        result = core.envvars.set(scope, {name: EnvValue(text, secret)}, CLI_ACTOR, message=message)
        stored = next((var for var in core.envvars.scope(scope)["variables"] if var["name"] == name), None)
    shown = stored["value"] if stored is not None else "********"
    state = "" if result.changed else " unchanged"
    click.echo(f"[{scope}] {name}{state} = {shown}  (env.ini version {result.snapshot.version})")


@env.command("unset")
@click.argument("scope")
@click.argument("name")
@click.option("--message", help="Why (kept in the audit log and as the history's commit message).")
@click.pass_context
def unset(ctx: click.Context, scope: str, name: str, message: str | None) -> None:
    """Remove one independent variable of SCOPE."""
    with open_core(ctx) as core:
        result = core.envvars.unset(scope, [name], CLI_ACTOR, message=message)
    click.echo(f"[{scope}] {name} unset  (env.ini version {result.snapshot.version})")


def _line(var: dict[str, Any]) -> str:
    where = var["source"] if var["kind"] == "independent" else f"mapped from {var['source']}"
    hidden = f"; overrides {', '.join(var['overrides'])}" if var.get("overrides") else ""
    return f"  {var['name']} = {var['value']}    # {where}{hidden}"


COMMANDS = [env]
