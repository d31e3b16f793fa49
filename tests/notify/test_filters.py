"""A destination gets the event types it asked for, and when it names services or sections, only
the events about one of them: a write by the sections it changed, a sync round by its services."""

from __future__ import annotations

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.notify.events import sync_applied

ADMIN = Actor("alice", "api")
NOBODY = "http://127.0.0.1:9/hook"  # nothing listens: the tests read the outbox


def destinations_of(core: Core, event_type: str) -> list[str]:
    return sorted(d.destination for d in core.notifications.outbox.deliveries(limit=1000) if d.event.type == event_type)


def test_a_write_goes_to_the_destinations_of_its_sections_and_types(core: Core) -> None:
    add = core.notifications.destinations.add
    add("everything", "webhook", NOBODY)
    add("gitea-only", "webhook", NOBODY, sections=["gitea"])
    add("portainer-only", "slack", NOBODY, sections=["portainer"])
    add("failures", "webhook", NOBODY, events=["sync.failed", "settings.refused"])
    add("gitea-service", "webhook", NOBODY, services=["gitea"])  # a write names sections, not services

    core.config.update({"gitea": {"user_email": "filtered@example.org"}}, ADMIN)

    assert destinations_of(core, "settings.changed") == ["everything", "gitea-only"]


def test_a_sync_round_goes_to_the_destinations_of_its_services(core: Core) -> None:
    add = core.notifications.destinations.add
    add("everything", "webhook", NOBODY)
    add("web", "webhook", NOBODY, services=["web"])
    add("db", "webhook", NOBODY, services=["db"])
    add("web-or-gitea", "webhook", NOBODY, services=["web"], sections=["gitea"])
    add("changes-only", "webhook", NOBODY, events=["settings.changed"])

    core.notifications.publish(sync_applied("v2", [{"service": "web", "result": "applied", "action": "reload"}],
                                            {"total": 12.5}))

    assert destinations_of(core, "sync.applied") == ["everything", "web", "web-or-gitea"]


def test_a_disabled_destination_gets_nothing_until_enabled(core: Core) -> None:
    core.notifications.destinations.add("ops", "webhook", NOBODY)
    core.notifications.destinations.set_enabled("ops", False, "paused by the operator")
    core.config.update({"gitea": {"user_email": "paused@example.org"}}, ADMIN)
    assert destinations_of(core, "settings.changed") == []
    core.notifications.destinations.set_enabled("ops", True)
    core.config.update({"gitea": {"user_email": "resumed@example.org"}}, ADMIN)
    assert destinations_of(core, "settings.changed") == ["ops"]
