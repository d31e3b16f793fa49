"""`apphub notify list|add|test|remove|enable|disable|deliveries|replay`: where events go, and what became
of them. The CLI queues; a running server (or the next one started) delivers."""

from __future__ import annotations

import json

import click

from apphub.cli.context import open_core
from apphub.notify.destinations import ALL, KINDS


@click.group("notify")
def notify() -> None:
    """Notifications: signed webhooks, Slack, Discord and WeCom destinations, and their deliveries."""


@notify.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """The destinations (URLs and secrets masked), as JSON."""
    with open_core(ctx) as core:
        click.echo(json.dumps([d.public() for d in core.notifications.destinations.all()], indent=2))


@notify.command("add")
@click.argument("name")
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--url", prompt=True, hide_input=True,
              help="Where to POST (a chat webhook's URL is its credential: asked for unseen when not given).")
@click.option("--secret", help="A webhook's signing secret (whsec_...); none: one is made and printed once.")
@click.option("--event", "events", multiple=True, help=f"An event type to send (repeat; default {ALL}: all).")
@click.option("--service", "services", multiple=True, help="Only events about this service (repeat).")
@click.option("--section", "sections", multiple=True, help="Only events about this section (repeat).")
@click.pass_context
def add(ctx: click.Context, name: str, kind: str, url: str, secret: str | None, events: tuple[str, ...],
        services: tuple[str, ...], sections: tuple[str, ...]) -> None:
    """Add destination NAME of KIND (webhook, slack, discord, wecom)."""
    with open_core(ctx) as core:
        added = core.notifications.destinations.add(name, kind, url, secret=secret, events=events or (ALL,),
                                                    services=services, sections=sections)
    click.echo(f"destination {name} added ({kind})")
    if added.secret is not None and secret is None:
        click.echo(f"signing secret (shown once; the receiver verifies with it): {added.secret.reveal()}")


@notify.command("remove")
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Remove destination NAME (what it had pending is failed with it)."""
    with open_core(ctx) as core:
        core.notifications.destinations.remove(name)
    click.echo(f"destination {name} removed")


@notify.command("enable")
@click.argument("name")
@click.pass_context
def enable(ctx: click.Context, name: str) -> None:
    """Enable destination NAME again (after a 410 Gone disabled it)."""
    with open_core(ctx) as core:
        core.notifications.destinations.set_enabled(name, True)
    click.echo(f"destination {name} enabled")


@notify.command("disable")
@click.argument("name")
@click.pass_context
def disable(ctx: click.Context, name: str) -> None:
    """Pause destination NAME: nothing is queued for it until `apphub notify enable NAME`."""
    with open_core(ctx) as core:
        core.notifications.destinations.set_enabled(name, False, "disabled by an admin")
    click.echo(f"destination {name} disabled")


@notify.command("test")
@click.argument("name")
@click.pass_context
def test(ctx: click.Context, name: str) -> None:
    """Queue a test event for destination NAME (the server sends it; see `apphub notify deliveries`)."""
    with open_core(ctx) as core:
        made = core.notifications.test(name)
    click.echo(f"test queued for {name}: delivery {', '.join(map(str, made))}")


@notify.command("deliveries")
@click.option("--destination", help="Only this destination's.")
@click.option("--state", type=click.Choice(["pending", "delivered", "failed"]))
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.pass_context
def deliveries(ctx: click.Context, destination: str | None, state: str | None, limit: int) -> None:
    """The latest deliveries, newest first: state, attempts, last result."""
    with open_core(ctx) as core:
        found = core.notifications.outbox.deliveries(destination=destination, state=state, limit=limit)
    for delivery in found:
        last = f"{delivery.last_status or '-'} {delivery.last_error or ''}".strip()
        click.echo(f"{delivery.id}  {delivery.state:9}  {delivery.destination}  {delivery.event.type}  "
                   f"attempts {delivery.attempts}  {last}  {delivery.event.summary}")


@notify.command("replay")
@click.argument("delivery", type=int)
@click.pass_context
def replay(ctx: click.Context, delivery: int) -> None:
    """Queue DELIVERY again, its retries from the start."""
    with open_core(ctx) as core:
        core.notifications.outbox.replay(delivery)
    click.echo(f"delivery {delivery} queued again")


COMMANDS = [notify]
