"""What every command needs: the data folder chosen on the group, and the opened Core."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from apphub.audit.log import Actor
from apphub.core import Core
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
    finally:
        core.close()
