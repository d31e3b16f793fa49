"""One change set, one message: a chat destination is sent a change together with how the services
took it, not one message for the write and another for the sync a moment later.

A change the sync will report on (its event says `sync_expected`) is held until the `sync.*` event
that follows it is queued for the same destination, at most HOLD_S from when it happened (the sync
may be down, or slow: the change is then sent on its own). A webhook is not held: a machine reads
each event as it comes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from apphub.notify.events import CHANGE_TYPES, SYNC_TYPES, Event, awaits_sync
from apphub.notify.outbox import Delivery

HOLD_S = 60.0


def split(pile: Sequence[Delivery], now: float) -> tuple[list[Delivery], list[Delivery], float | None]:
    """A chat destination's pile (oldest first) as what to send now, what to hold, and until when:
    whatever came after the last sync event waits while a change in it awaits its sync."""
    last_sync = max((index for index, delivery in enumerate(pile) if delivery.event.type in SYNC_TYPES), default=-1)
    tail = pile[last_sync + 1:]
    deadlines = [_at(delivery.event) + HOLD_S for delivery in tail if awaits_sync(delivery.event)]
    if deadlines and min(deadlines) > now:
        return list(pile[:last_sync + 1]), list(tail), min(deadlines)
    return list(pile), [], None


def is_change_set(found: Sequence[Event]) -> bool:
    """A change and the sync event that followed it: told as one message."""
    return len(found) == 2 and found[0].type in CHANGE_TYPES and found[1].type in SYNC_TYPES


def _at(event: Event) -> float:
    try:
        return datetime.fromisoformat(event.at).timestamp()
    except ValueError:
        return 0.0  # a time that cannot be read: not held
