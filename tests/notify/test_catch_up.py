"""Nothing lost between a write and its event: a process killed after its write was made (durable)
but before the event was queued (its own transaction, just after) leaves the write in the audit
log, and the next server start queues its event from there, as the write would have built it,
once; a write already told, or made before a destination existed, is not told again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.paths import DataDir
from apphub.store.secrets import MASK

ADMIN = Actor("alice", "api", "req-42")
NOBODY = "http://127.0.0.1:9/hook"
PASSWORD = "Caught-Up-Horse-5521"


def told(core: Core) -> list[dict[str, object]]:
    return [d.event.as_dict() for d in core.notifications.outbox.deliveries(limit=1000)]


def test_a_write_whose_process_died_before_queuing_is_told_at_the_next_start(data_dir: DataDir) -> None:
    core = Core(data_dir)
    try:
        core.notifications.destinations.add("ops", "webhook", NOBODY)
        core.config.update({"gitea": {"user_email": "told@example.org"}}, ADMIN)  # told as usual
    finally:
        core.close()
    # A writer killed right after its write: the event never queued (a real process, SIGKILLed by
    # itself from the store's listener, which runs once the write is made and before the event).
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from apphub.audit.log import Actor
        from apphub.core import Core
        from apphub.paths import DataDir
        core = Core(DataDir(Path({str(data_dir.root)!r})))
        core.config.after_change.insert(0, lambda *told: os.kill(os.getpid(), signal.SIGKILL))
        core.config.update({{"gitea": {{"user_email": "lost@example.org", "user_pwd": {PASSWORD!r}}}}},
                           Actor("bob", "cli"))
    """)
    killed = subprocess.run([sys.executable, "-c", script], env=os.environ, capture_output=True, check=False)
    assert killed.returncode == -9, killed.stderr

    core = Core(data_dir)
    try:
        assert [event["data"]["actor"] for event in told(core)] == ["alice"]  # bob's write is not told yet
        [caught] = core.notifications.catch_up()
        assert core.notifications.catch_up() == []  # once
        core.config.update({"gitea": {"user_email": "after@example.org"}}, ADMIN)
        all_told = told(core)
    finally:
        core.close()
    assert caught.type == "settings.changed"
    assert caught.data["actor"] == "bob"
    assert caught.data["source"] == "cli"
    changes = {change["key"]: change for change in caught.data["changes"]}
    assert changes["user_email"]["new"] == "lost@example.org"
    assert changes["user_pwd"]["new"] == MASK
    assert PASSWORD not in json.dumps(all_told)
    assert [event["data"]["actor"] for event in reversed(all_told)] == ["alice", "bob", "alice"]


def test_a_write_made_before_a_destination_existed_is_not_told_to_it(core: Core) -> None:
    core.notifications.catch_up()  # the cursor at the folder's writes so far
    core.config.update({"gitea": {"user_email": "early@example.org"}}, ADMIN)
    core.notifications.destinations.add("late", "webhook", NOBODY)
    assert core.notifications.catch_up() == []
    assert told(core) == []
