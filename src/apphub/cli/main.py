"""`apphub`: the command group, the data folder option, and how errors become exit codes.

Exit codes: 0 success, 1 an apphub error (printed to stderr, naming the thing), 2 a usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from apphub.errors import ApphubError, IniParseError
from apphub.paths import DATA_ENV, DataDir, default_data_dir


class ApphubGroup(click.Group):
    """A group whose commands turn apphub errors into a clear message and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IniParseError as exc:
            # Where, not what: the broken line may be a password without its `=`, and this output
            # ends up in logs. `apphub check` quotes it for the operator who asks.
            raise click.ClickException(f"{exc.public} (run `apphub check` to see the line)") from exc
        except ApphubError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=ApphubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=DATA_ENV,
    default=default_data_dir,
    show_default="$XDG_DATA_HOME/apphub or ~/.local/share/apphub",
    help=f"The data folder (config.ini, system.ini, schema.d/, .apphub/). Also ${DATA_ENV}.",
)
@click.version_option(package_name="apphub")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path) -> None:
    """Apphub config center: one source of truth for the configuration of a host's services."""
    ctx.obj = DataDir(data_dir.expanduser().absolute())


def _register() -> None:
    from apphub.cli import config, env, environments, history, keys, legacy, notify, serve, services, sync, templates

    for module in (serve, config, keys, sync, history, legacy, env, services, environments, templates, notify):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="apphub")
