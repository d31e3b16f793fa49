"""`apphub serve` and `apphub init`: create the data folder if needed, then run the API."""

from __future__ import annotations

import gc
import logging
from typing import Any

import click

from apphub.bootstrap import InitReport, initialise
from apphub.cli.context import data_of
from apphub.paths import DataDir

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's log config, with our access log instead of its own (which would print query strings)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "apphub": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }


def report_init(data: DataDir, report: InitReport) -> None:
    if report.created:
        click.echo(f"apphub: initialised the data folder {data.root}", err=True)
    if report.admin_key_file is not None:
        click.echo(
            f"apphub: created the admin API key; it is in {report.admin_key_file} (readable by its owner only). "
            "Keep it safe: apphub will not say this again.",
            err=True,
        )
    for problem in report.problems:
        click.echo(f"apphub: warning: {problem}", err=True)
    if report.completed_keys:
        click.echo(f"apphub: added {report.completed_keys} required key(s) the existing files lacked, "
                   "from their defaults (see the audit log)", err=True)
    if report.encrypted_secrets:
        click.echo(f"apphub: encrypted {report.encrypted_secrets} secret(s) that were stored in plaintext", err=True)


@click.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the data folder (config, schema, keys) if it is missing anything; change nothing else."""
    data = data_of(ctx)
    report_init(data, initialise(data))
    click.echo(str(data.root))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, log_level: str) -> None:
    """Run the config center (initialising the data folder on first start)."""
    import uvicorn

    from apphub.api.app import create_app
    data = data_of(ctx)
    report_init(data, initialise(data))
    logging.getLogger("apphub").info("serving %s on http://%s:%d", data.root, host, port)
    app = create_app(data)
    # Everything loaded so far (modules, the app, its routes and models) lives as long as the
    # process: moved out of the collector's reach, a full collection no longer walks it. Measured:
    # full collections paused the sync thread 40-65 ms, a few times per 100 applies at 50 services.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=logging_config(log_level),
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )


COMMANDS = [init, serve]
