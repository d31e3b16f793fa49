"""`apphub init-services` and `apphub services`: the products' first-start initialisation, every
service's health, a service's own key and init-config.sh, from the command line (no server needed)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from importlib import resources

import click

from apphub.cli.context import open_core
from apphub.cli.keys import create_key
from apphub.db import Database
from apphub.services.board import ServiceBoard
from apphub.services.manager import PRODUCTS, ServiceManager
from apphub.services.status import InitStatus, ProductRun
from apphub.sync.manifest import load_manifest
from apphub.sync.settings import SyncSettings

MARKS = {"done": "+", "unchanged": "=", "failed": "!", "manual": "?", "skipped": "-", "pending": " ", "running": "~"}


@contextlib.contextmanager
def _manager(ctx: click.Context) -> Iterator[ServiceManager]:
    with open_core(ctx) as core:
        database = Database(core.data.database)
        try:
            yield ServiceManager(core, InitStatus(database))
        finally:
            database.close()


@click.command("init-services")
@click.option("--service", "names", multiple=True, type=click.Choice(list(PRODUCTS)),
              help="Only this product (repeatable). Default: system.ini [services] enabled.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@click.pass_context
def init_services(ctx: click.Context, names: tuple[str, ...], as_json: bool) -> None:
    """Initialise the products (first admin, tokens, repository, environment), each step retried;
    a second run changes nothing and says so. Exit 1 when a step failed or needs a person."""
    with _manager(ctx) as manager:
        runs = manager.initialise(names or None, trigger="cli")
        if not runs:
            click.echo("no product is enabled: set system.ini [services] enabled (e.g. apphub setsysconfig "
                       "--section services --key enabled --value nginx_proxy_manager,gitea,portainer,cockpit)",
                       err=True)
    if as_json:
        click.echo(json.dumps([run.to_dict() for run in runs.values()], indent=2))
    else:
        for run in runs.values():
            _print_run(run)
    if any(run.state != "done" for run in runs.values()):
        raise click.exceptions.Exit(1)


def _print_run(run: ProductRun) -> None:
    verdict = {"done": "changed" if run.changed else "already initialised, nothing changed"}.get(run.state, run.state)
    click.echo(f"{run.service}: {verdict} ({run.duration_ms or 0:.0f} ms)")
    for step in run.steps:
        said = step.detail if step.state not in ("failed",) else step.last_error
        tries = f" after {step.attempts} attempts" if step.attempts > 1 else ""
        click.echo(f"  {MARKS.get(step.state, ' ')} {step.name}: {step.state}{tries}" + (f": {said}" if said else ""))


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def services(ctx: click.Context, as_json: bool) -> None:
    """Every service apphub knows with its health, tested now: the products, the engines, the manifest's.
    Exit 1 when a product or a manifest service is down or unhealthy."""
    if ctx.invoked_subcommand is not None:
        return
    with _manager(ctx) as manager:
        board = ServiceBoard(manager, manager.core.data.root / "services.yaml", manager.core.data.root)
        checks = board.check_all()
        runs = manager.status.load()
    if as_json:
        click.echo(json.dumps({"services": [check.to_dict() for check in checks],
                               "init": [run.to_dict() for run in runs.values()]}, indent=2))
        return
    width = max((len(check.name) for check in checks), default=4)
    for check in checks:
        init = runs.get(check.name)
        columns = [f"{check.name:<{width}}", f"{check.health:<9}", check.version or "-"]
        if init is not None:
            columns.append(f"init: {init.state}")
        if check.reason:
            columns.append(check.reason)
        click.echo("  ".join(columns))
    # An engine this host does not use (no Docker on a supervisord-only host) is shown, not a failure.
    if any(check.health in ("down", "unhealthy") for check in checks if check.kind != "engine"):
        raise click.exceptions.Exit(1)


@services.command("key")
@click.argument("service")
@click.option("--name", default=None, help="The key's name (default: SERVICE-config).")
@click.pass_context
def service_key(ctx: click.Context, service: str, name: str | None) -> None:
    """Create and print a read-only key that sees only SERVICE's configuration (for its init-config.sh)."""
    with open_core(ctx) as core:
        settings = SyncSettings.from_system(core.system.snapshot())
        manifest = load_manifest(core.data.root / "services.yaml", settings.roots, core.data.root)
        if service not in manifest.services:
            raise click.ClickException(f"services.yaml has no service {service!r} (it has: "
                                       f"{', '.join(manifest.services) or 'none'})")
        click.echo(create_key(core, name or f"{service}-config", "read", service))


@services.command("script")
def script() -> None:
    """Print init-config.sh, the script a service's container runs first to fetch its configuration."""
    click.echo(resources.files("apphub.services").joinpath("init-config.sh").read_text(encoding="utf-8"), nl=False)


COMMANDS = [init_services, services]
