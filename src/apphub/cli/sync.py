"""`apphub plan`: what a change (or a full sync) would do to each service, touching nothing."""

from __future__ import annotations

import json
import os

import click

from apphub.cli.context import data_of, open_core
from apphub.reload.build import build_backends
from apphub.sync.manifest import load_manifest
from apphub.sync.plan import Planner
from apphub.sync.settings import SyncSettings


@click.command()
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
              help="A proposed change (repeatable). Without any: what a full sync would do now.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def plan(ctx: click.Context, assignments: tuple[str, ...], as_json: bool) -> None:
    """Show, per service, the diff of every file it reads and the reload it would get (secrets masked)."""
    changes: dict[str, dict[str, object]] = {}
    for assignment in assignments:
        target, sep, value = assignment.partition("=")
        section, dot, key = target.rpartition(".")
        if not sep or not dot or not section or not key:
            raise click.BadParameter(f"{assignment!r}: write SECTION.KEY=VALUE", param_hint="--set")
        changes.setdefault(section, {})[key] = value
    data = data_of(ctx)
    with open_core(ctx) as core:
        settings = SyncSettings.from_system(core.system.snapshot())
        manifest = load_manifest(data.root / "services.yaml", settings.roots, data.root)
        current = core.config.snapshot()
        proposed = core.config.preview(changes) if changes else current
        # A container's environment is read from the engine, as the server's plan does.
        planner = Planner(manifest, data.root / manifest.templates, os.environ,
                          container_env=build_backends(settings).container_env)
        result = planner.plan(proposed, previous=current if changes else None, env=core.env.snapshot())
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    for error in result.errors:
        click.echo(f"refused: {error}", err=True)
    for service in result.services.values():
        if not service.changed:
            click.echo(f"{service.name}: unchanged")
            continue
        click.echo(f"{service.name}: {service.action.strategy} ({service.level}: {', '.join(service.because)})")
        for file in service.files:
            if file.changed:
                click.echo(file.diff().rstrip("\n"))
    if result.refused:
        raise click.exceptions.Exit(1)


COMMANDS = [plan]
