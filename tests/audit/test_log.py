"""The audit log: events recorded in SQLite and queried newest first, with filters and a cursor."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphub.audit.log import Actor, AuditEvent, AuditLog, AuditQuery, Change, utc_now
from apphub.db import Database

API = Actor("deploy-bot", "api", "req-1")
CLI = Actor("cli", "cli")
LEGACY = Actor("api_key", "legacy", "req-3")


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    opened = Database(tmp_path / "apphub.db")
    opened.migrate()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def log(database: Database) -> AuditLog:
    return AuditLog(database)


def next_tick() -> None:
    """Wait until the clock the log stamps events with has moved on, so events get distinct times."""
    start = utc_now()
    while utc_now() == start:
        pass


@pytest.fixture
def history(log: AuditLog) -> list[AuditEvent]:
    """Five events from three actors, oldest first, each at its own time."""
    recorded = [
        (API, "settings.update", [Change("gitea", "user_name", "set", "websoft9", "forge"),
                                  Change("cockpit", "port", "set", "9090", "9191")]),
        (CLI, "settings.update", [Change("gitea", "user_pwd", "set", "********", "********")]),
        (LEGACY, "settings.update", [Change("cockpit", "port", "set", "9191", "9090")]),
        (CLI, "secrets.rotate", [Change("gitea", "user_pwd", "encrypt", "********", "********"),
                                 Change("portainer", "user_pwd", "encrypt", "********", "********")]),
        (API, "settings.delete", [Change("nginx_proxy_manager", "nike_name", "delete", "admin", None)]),
    ]
    for actor, action, changes in recorded:
        next_tick()
        log.record(actor, action, changes, file="config.ini", version_before="v-old", version_after="v-new")
    events = log.query(AuditQuery(limit=500))
    assert len(events) == 5
    return list(reversed(events))


def ids(events: list[AuditEvent]) -> list[int]:
    return [event.id for event in events]


def test_record_then_query_gives_the_event_back(log: AuditLog) -> None:
    event_id = log.record(
        API,
        "settings.update",
        [
            Change("gitea", "user_name", "set", "websoft9", "forge"),
            Change("gitea", "user_pwd", "add", None, "********"),
        ],
        file="config.ini",
        version_before="a" * 32,
        version_after="b" * 32,
        message="via PUT /api/v1/settings/gitea",
    )

    [event] = log.query(AuditQuery())
    assert event.id == event_id
    assert (event.actor, event.source, event.request_id, event.action) == ("deploy-bot", "api", "req-1",
                                                                          "settings.update")
    assert (event.file, event.version_before, event.version_after) == ("config.ini", "a" * 32, "b" * 32)
    assert event.message == "via PUT /api/v1/settings/gitea"
    assert event.changes == [
        Change("gitea", "user_name", "set", "websoft9", "forge"),
        Change("gitea", "user_pwd", "add", None, "********"),
    ]
    at = dt.datetime.fromisoformat(event.at.replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - at).total_seconds()) < 60
    assert event.as_dict()["changes"][0] == {"section": "gitea", "key": "user_name", "change": "set",
                                             "old": "websoft9", "new": "forge"}


def test_an_event_without_changes_is_kept(log: AuditLog) -> None:
    log.record(CLI, "keys.create", message="created key deploy-bot")

    [event] = log.query(AuditQuery())
    assert (event.action, event.changes, event.file) == ("keys.create", [], None)


def test_events_survive_reopening_the_database(tmp_path: Path) -> None:
    first = Database(tmp_path / "apphub.db")
    first.migrate()
    AuditLog(first).record(CLI, "settings.update", [Change("cockpit", "port", "set", "1", "2")])
    first.close()

    second = Database(tmp_path / "apphub.db")
    second.migrate()
    try:
        [event] = AuditLog(second).query(AuditQuery())
    finally:
        second.close()
    assert event.changes == [Change("cockpit", "port", "set", "1", "2")]


def test_query_is_newest_first_with_changes_in_their_order(log: AuditLog, history: list[AuditEvent]) -> None:
    events = log.query(AuditQuery())

    assert ids(events) == sorted(ids(history), reverse=True)
    assert [event.at for event in events] == sorted((event.at for event in events), reverse=True)
    assert [c.section for c in events[1].changes] == ["gitea", "portainer"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (AuditQuery(section="gitea"), [3, 1, 0]),
        (AuditQuery(section="cockpit"), [2, 0]),
        (AuditQuery(key="user_pwd"), [3, 1]),
        (AuditQuery(section="portainer", key="user_pwd"), [3]),
        (AuditQuery(section="gitea", key="port"), []),  # both must hold for the same change
        (AuditQuery(actor="cli"), [3, 1]),
        (AuditQuery(actor="nobody"), []),
        (AuditQuery(source="legacy"), [2]),
        (AuditQuery(action="secrets.rotate"), [3]),
        (AuditQuery(actor="deploy-bot", section="cockpit"), [0]),
        (AuditQuery(source="api", action="settings.delete", key="nike_name"), [4]),
    ],
)
def test_filters(log: AuditLog, history: list[AuditEvent], query: AuditQuery, expected: list[int]) -> None:
    events = log.query(query)

    assert ids(events) == [history[n].id for n in expected]


def test_a_section_filter_still_returns_every_change_of_the_event(log: AuditLog, history: list[AuditEvent]) -> None:
    [first] = log.query(AuditQuery(section="cockpit", actor="deploy-bot"))

    assert [(c.section, c.key) for c in first.changes] == [("gitea", "user_name"), ("cockpit", "port")]


def test_since_and_until_are_inclusive_utc_times(log: AuditLog, history: list[AuditEvent]) -> None:
    third = history[2].at

    assert ids(log.query(AuditQuery(since=third))) == [history[4].id, history[3].id, history[2].id]
    assert ids(log.query(AuditQuery(until=third))) == [history[2].id, history[1].id, history[0].id]
    assert ids(log.query(AuditQuery(since=history[1].at, until=history[3].at))) == [
        history[3].id, history[2].id, history[1].id
    ]


def test_times_with_other_zones_or_none_mean_the_same_instant(log: AuditLog, history: list[AuditEvent]) -> None:
    third = dt.datetime.fromisoformat(history[2].at.replace("Z", "+00:00"))
    expected = ids(log.query(AuditQuery(since=history[2].at)))
    assert len(expected) == 3

    spellings = [
        third.isoformat(),  # +00:00
        third.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat(),  # +02:00
        third.astimezone(dt.timezone(dt.timedelta(hours=-5, minutes=-30))).isoformat(),  # -05:30
        third.replace(tzinfo=None).isoformat(),  # no zone: UTC
        history[2].at.replace("Z", "z"),
    ]
    for spelling in spellings:
        assert ids(log.query(AuditQuery(since=spelling))) == expected, spelling


def test_a_day_or_a_time_without_fractions_works_as_a_bound(log: AuditLog, history: list[AuditEvent]) -> None:
    first_day = history[0].at[:10]
    next_day = (dt.date.fromisoformat(history[-1].at[:10]) + dt.timedelta(days=1)).isoformat()

    assert len(log.query(AuditQuery(since=first_day))) == 5
    assert log.query(AuditQuery(since=next_day)) == []
    assert len(log.query(AuditQuery(until=f"{next_day}T00:00:00+00:00"))) == 5
    assert len(log.query(AuditQuery(until=history[-1].at[:19]))) < 5  # seconds only: the last event is later
    assert log.query(AuditQuery(until="2000-01-01T00:00:00Z")) == []


def test_before_cursor_pages_through_everything_once(log: AuditLog, history: list[AuditEvent]) -> None:
    pages: list[list[int]] = []
    cursor: int | None = None
    while True:
        page = log.query(AuditQuery(before_id=cursor, limit=2))
        if not page:
            break
        pages.append(ids(page))
        cursor = page[-1].id

    newest_first = sorted(ids(history), reverse=True)
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]


def test_the_cursor_combines_with_filters(log: AuditLog, history: list[AuditEvent]) -> None:
    first = log.query(AuditQuery(section="gitea", limit=1))
    rest = log.query(AuditQuery(section="gitea", before_id=first[-1].id, limit=10))

    assert ids(first) == [history[3].id]
    assert ids(rest) == [history[1].id, history[0].id]


@pytest.mark.parametrize(("limit", "count"), [(1, 1), (3, 3), (5, 5), (500, 5)])
def test_limit(log: AuditLog, history: list[AuditEvent], limit: int, count: int) -> None:
    events = log.query(AuditQuery(limit=limit))

    assert ids(events) == sorted(ids(history), reverse=True)[:count]
    assert all(event.changes for event in events)  # changes are loaded for every returned event
