"""`apphub template list|show|apply`: configuration templates, applied as one audited write."""

from __future__ import annotations

import json

import click

from apphub.cli.context import CLI_ACTOR, data_of, open_core
from apphub.templates import apply as applying
from apphub.templates.catalog import Catalog


@click.group("template")
def template() -> None:
    """Configuration templates: named starting points with variables (shipped, and DATA/config-templates)."""


@template.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Every template: its name, kind (configuration or section) and what it is for."""
    catalog = Catalog(data_of(ctx).root)
    for found in catalog.all().values():
        click.echo(f"{found.name}  ({found.kind}: {', '.join(found.settings)})  {found.description}")
    for problem in catalog.problems:
        click.echo(problem, err=True)


@template.command("show")
@click.argument("name")
@click.pass_context
def show(ctx: click.Context, name: str) -> None:
    """A template's variables (type, default, required) and the settings it makes, as JSON."""
    found = Catalog(data_of(ctx).root).get(name)
    with open_core(ctx) as core:
        click.echo(json.dumps(found.as_dict(core.config.schema.is_secret), indent=2))


@template.command("apply")
@click.argument("name")
@click.option("--set", "assignments", multiple=True, metavar="VAR=VALUE", help="A variable's value (repeat).")
@click.option("--preview", "preview_only", is_flag=True,
              help="Show what it would change (secrets masked) and write nothing.")
@click.option("--message", help="Why (kept in the audit log and the history).")
@click.pass_context
def apply_(ctx: click.Context, name: str, assignments: tuple[str, ...], preview_only: bool,
           message: str | None) -> None:
    """Apply template NAME to config.ini: validated by the schema and the rules, audited as `template`."""
    variables = dict(_assignment(text) for text in assignments)
    with open_core(ctx) as core:
        found = Catalog(core.data.root).get(name)
        if preview_only:
            proposed, changes = applying.preview(core.config, found, variables)
            for change in changes:
                click.echo(f"[{change.section}] {change.key}: {change.old!r} -> {change.new!r}")
            click.echo(f"{len(changes)} change(s); config.ini would be at version {proposed.version} (nothing written)")
            return
        result = applying.apply(core.config, found, variables, CLI_ACTOR, message)
    click.echo(f"template {name} applied: {len(result.changes)} change(s)  (version {result.snapshot.version})"
               if result.changed else f"template {name} changes nothing")
    for warning in result.warnings:
        click.echo(str(warning), err=True)


def _assignment(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise click.BadParameter(f"{text!r} is not VAR=VALUE", param_hint="--set")
    return name, value


COMMANDS = [template]
