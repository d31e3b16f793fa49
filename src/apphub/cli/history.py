"""`apphub history`, `show`, `diff` and `rollback`: the versions, from the command line.

`apphub diff` exits 0 when the versions are equal, 1 when they differ and 2 on an error (as
`diff` and `kubectl diff` do), so that scripts can ask "did anything change?".
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from apphub.cli.context import CLI_ACTOR, data_of, open_core
from apphub.errors import ApphubError, ManifestError
from apphub.history.index import HistoryQuery
from apphub.history.recorder import CONFIG
from apphub.history.rollback import plan_rollback, rollback
from apphub.store.atomic import atomic_write
from apphub.sync.manifest import load_manifest
from apphub.sync.plan import Planner
from apphub.sync.settings import SyncSettings

STORE_FILES = click.Choice(["config.ini", "system.ini", "env.ini"])


@click.command("history")
@click.option("--section", help="Versions that changed this section.")
@click.option("--key", help="Versions that changed this key.")
@click.option("--author", help="A key's name, cli, file, init.")
@click.option("--source", help="api, cli, file, rollback, init...")
@click.option("--file", "file_name", help="config.ini, system.ini, services.yaml...")
@click.option("--since", help="ISO 8601 time, inclusive.")
@click.option("--until", help="ISO 8601 time, inclusive.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def history(ctx: click.Context, section: str | None, key: str | None, author: str | None, source: str | None,
            file_name: str | None, since: str | None, until: str | None, limit: int, as_json: bool) -> None:
    """List the versions, newest first (a commit each, in DATA/.apphub/history)."""
    query = HistoryQuery(section=section, key=key, author=author, source=source, file=file_name, since=since,
                         until=until, limit=limit)
    with open_core(ctx) as core:
        try:
            entries, _ = core.history.page(query)
        except ValueError as exc:  # a time that is not ISO 8601
            raise click.BadParameter(str(exc), param_hint="--since/--until") from exc
    if as_json:
        click.echo(json.dumps([entry.as_dict() for entry in entries], indent=2))
        return
    for entry in entries:
        version = (entry.config_version or "")[:12]
        flag = "  (recovered)" if entry.recovered else ""
        click.echo(f"{entry.commit[:12]}  {version:12}  {entry.at[:19]}  {entry.author:10} {entry.source:8} "
                   f"{entry.message}{flag}")


@click.command("show")
@click.argument("version")
@click.option("--file", "file_name", type=STORE_FILES, default=CONFIG, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx: click.Context, version: str, file_name: str, as_json: bool) -> None:
    """Print one version: who made it, why, and its settings (secrets masked)."""
    with open_core(ctx) as core:
        entry = core.history.resolve(version, with_changes=True)
        snapshot = core.history.snapshot(entry, file_name)
        settings = snapshot.public
    if as_json:
        click.echo(json.dumps(entry.as_dict() | {"settings": settings}, indent=2))
        return
    click.echo(f"commit {entry.commit}\nversion {entry.config_version}\nauthor {entry.author} ({entry.source})\n"
               f"date {entry.at}\n\n    {entry.message}\n")
    for section, keys in settings.items():
        click.echo(f"[{section}]")
        for key, value in keys.items():
            click.echo(f"{key} = {_text(value)}")
        click.echo("")


@click.command("diff")
@click.argument("old")
@click.argument("new", required=False)
@click.option("--file", "file_name", type=STORE_FILES, default=CONFIG, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def diff(ctx: click.Context, old: str, new: str | None, file_name: str, as_json: bool) -> None:
    """Compare two versions (NEW: the current file if left out); exit 0 equal, 1 different, 2 error."""
    try:
        with open_core(ctx) as core:
            found = core.history.diff(old, new, file_name)
    except ApphubError as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(2)
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2))
    else:
        for change in found.changes:
            click.echo(f"{change.change:8} [{change.section}] {change.key}: {_pair(change.old, change.new)}")
        if found.unified:
            click.echo("")
            click.echo(found.unified, nl=False)
    ctx.exit(0 if found.equal else 1)


@click.command("rollback")
@click.argument("version")
@click.option("--file", "file_name", type=click.Choice(["config.ini", "system.ini", "env.ini", "services.yaml"]),
              default=CONFIG, show_default=True, help="system.ini and services.yaml: only from here (admin).")
@click.option("--message", help="Why (the history's commit message).")
@click.option("--force", is_flag=True, help="Write it even if it no longer validates against today's schema.")
@click.option("--dry-run", is_flag=True, help="Show what it would change and do to each service; touch nothing.")
@click.pass_context
def rollback_command(ctx: click.Context, version: str, file_name: str, message: str | None, force: bool,
                     dry_run: bool) -> None:
    """Bring a version back as a new version (history is never rewritten); the server's sync applies it."""
    if file_name == "services.yaml":
        _rollback_manifest(ctx, version, message, force, dry_run)
        return
    with open_core(ctx) as core:
        store = {CONFIG: core.config, "system.ini": core.system, "env.ini": core.env.store}[file_name]
        if dry_run:
            found = plan_rollback(core.history, store, version, _service_planner(ctx) if file_name == CONFIG else None)
            click.echo(json.dumps(found.as_dict(), indent=2))
            if found.problems:
                ctx.exit(1)
            return
        result, target = rollback(core.history, store, version, CLI_ACTOR, force=force, message=message)
    if result.changed:
        click.echo(f"{file_name} is back at {target.commit[:12]} (new version {result.snapshot.version}); "
                   f"{len(result.changes)} key(s) changed")
    else:
        click.echo(f"{file_name} is at that version already: nothing changed")


def _rollback_manifest(ctx: click.Context, version: str, message: str | None, force: bool, dry_run: bool) -> None:
    data = data_of(ctx)
    path = data.root / "services.yaml"
    with open_core(ctx) as core:
        target = core.history.resolve(version)
        content = core.history.repository().read(target.commit, "services.yaml")
        if content is None:
            raise click.ClickException(f"the version {target.commit[:12]} has no services.yaml")
        settings = SyncSettings.from_system(core.system.snapshot())
        trial = path.with_name(f".services.yaml.rollback-{os.getpid()}")
        try:
            atomic_write(trial, content, mode=0o644)
            load_manifest(trial, settings.roots, data.root)
        except ManifestError as exc:
            if not force:
                raise click.ClickException(f"the services.yaml of {target.commit[:12]} is no longer valid: {exc}") \
                    from exc
        finally:
            trial.unlink(missing_ok=True)
        if dry_run:
            click.echo(f"services.yaml would be the version of {target.commit[:12]} ({len(content)} bytes)")
            return
        core.history.record()  # what is on disk now, first: the rollback's commit is the next
        atomic_write(path, content, mode=0o644)
        commit = core.history.record_files({"services.yaml": content}, "cli", "rollback",
                                           message or f"rollback of services.yaml to {target.commit[:12]}")
    click.echo(f"services.yaml is back at {target.commit[:12]}" + (f" (commit {commit[:12]})" if commit else ""))


def _service_planner(ctx: click.Context) -> Any:
    data = data_of(ctx)

    def plan(snapshot: Any) -> dict[str, Any]:
        with open_core(ctx) as core:
            settings = SyncSettings.from_system(core.system.snapshot())
            current = core.config.snapshot()
        manifest = load_manifest(data.root / "services.yaml", settings.roots, data.root)
        planner = Planner(manifest, data.root / manifest.templates, os.environ)
        return planner.plan(snapshot, previous=current).to_dict()

    return plan


def _pair(old: str | None, new: str | None) -> str:
    return f"{old if old is not None else '(none)'} -> {new if new is not None else '(none)'}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return "" if value is None else str(value)


COMMANDS = [history, show, diff, rollback_command]
