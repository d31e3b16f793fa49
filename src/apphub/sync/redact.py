"""What the sync engine shows of a text that may quote a secret: masked first, then shortened.

A reload or a probe that fails quotes what the service said (a command's output, a response body,
a program's stderr), and a service can say a secret that its files hold. The backends in
apphub.reload know nothing of secrets, so they quote whole lines and never cut inside one; this is
the one place where such a text is cut to a length a status line, an audit entry or a log line can
carry, and it masks every secret before it cuts. Cut first, and a secret across the cut is left
in part, which no mask matches any more (issue 8). A secret never spans lines (store/validate.py
refuses line breaks in a value), so a text cut between lines holds whole secrets only.
"""

from __future__ import annotations

from apphub.sync.values import mask_secrets

# A failure's cause as shown: its beginning says what failed, its end what the service said last.
SHOWN_CHARS = 1500
_HEAD_SHARE = 0.4
ELISION = " … "


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` cut to about `limit` characters, keeping its beginning and its end. Only ever call
    it on a text whose secrets are masked."""
    if len(text) <= limit:
        return text
    head = int(limit * _HEAD_SHARE)
    tail = limit - head - len(ELISION)
    return text[:head].rstrip() + ELISION + text[-tail:].lstrip()


def redact(text: str, masks: list[str], limit: int = SHOWN_CHARS) -> str:
    """`text` with every spelling of a secret in `masks` masked, then shortened to `limit`."""
    return shorten(mask_secrets(text, masks), limit)
