"""What every command needs: the data folder chosen on the group, and the opened Core."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.errors import ApphubError
from apphub.paths import DataDir

CLI_ACTOR = Actor("cli", "cli")


def data_of(ctx: click.Context) -> DataDir:
    data: DataDir = ctx.find_root().obj
    return data


@contextlib.contextmanager
def open_core(ctx: click.Context) -> Iterator[Core]:
    core = Core(data_of(ctx))
    try:
        yield core
        _record_history(core)
    finally:
        core.close()


def _record_history(core: Core) -> None:
    """Commit the versions this command wrote (a running server would, within a second; without
    one, the command does). A failure loses nothing: the versions wait in the database."""
    try:
        if core.audit.versions_waiting():
            core.history.record()
    except ApphubError as exc:
        click.echo(f"warning: the history could not commit this change yet (it is kept, and committed "
                   f"later): {exc}", err=True)
