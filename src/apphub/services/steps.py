"""One initialisation step: run it with retries, and record what happened.

A step is a function that returns a Done (what it did, or that nothing needed doing) or raises:
ServiceUnreachable is retried with exponential backoff and full jitter (tenacity) until the
attempts or the time budget run out; anything else (ServiceRefused: wrong credentials, a rule
of the product; NeedsOperator: something only a person can do) ends the step at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import tenacity

from apphub.audit.log import utc_now
from apphub.errors import ApphubError, Interrupted, NeedsOperator, ServiceUnreachable
from apphub.services.http import mask

StepState = Literal["pending", "running", "done", "unchanged", "failed", "manual", "skipped"]
ENDED: frozenset[str] = frozenset({"done", "unchanged", "failed", "manual", "skipped"})


@dataclass(frozen=True)
class Done:
    """A step's success: `changed` False means the product was already as wanted."""

    changed: bool
    detail: str


@dataclass
class StepResult:
    name: str
    description: str = ""
    state: StepState = "pending"
    attempts: int = 0
    last_error: str | None = None
    detail: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    run: Callable[[], Done]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a step tries: `attempts` at most, each call bounded by the HTTP timeout, with
    waits of random.uniform(0, min(cap, base * 2**n)) between them, all within `budget` seconds."""

    attempts: int = 6
    base: float = 0.2
    cap: float = 5.0
    budget: float = 120.0


@dataclass
class StepRunner:
    """Runs steps with `policy`; `stop` cuts the waits short when apphub is stopping."""

    policy: RetryPolicy
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, step: Step, result: StepResult, secrets: Callable[[], Iterable[str]],
            on_change: Callable[[], None] = lambda: None) -> StepResult:
        """Run `step`, filling `result` as it goes (`on_change` after each attempt)."""
        started = time.monotonic()
        result.state, result.started_at, result.attempts, result.last_error = "running", utc_now(), 0, None
        on_change()

        def attempt() -> Done:
            result.attempts += 1
            return step.run()

        def note_failure(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            result.last_error = mask(str(error), secrets()) if error is not None else None
            on_change()

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.attempts) | tenacity.stop_after_delay(self.policy.budget),
            wait=tenacity.wait_random_exponential(multiplier=self.policy.base, max=self.policy.cap),
            retry=tenacity.retry_if_exception_type(ServiceUnreachable),
            before_sleep=note_failure,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            done = retrying(attempt)
        except NeedsOperator as exc:
            result.state, result.detail = "manual", mask(str(exc), secrets())
        except ApphubError as exc:
            result.state, result.last_error = "failed", mask(str(exc), secrets())
        except Exception as exc:  # an answer of a shape the product's module did not expect
            result.state = "failed"
            result.last_error = mask(f"{step.name}: unexpected {type(exc).__name__}: {exc}", secrets())[:500]
        else:
            result.state = "done" if done.changed else "unchanged"
            result.detail = mask(done.detail, secrets())
        result.finished_at = utc_now()
        result.duration_ms = round((time.monotonic() - started) * 1000, 1)
        on_change()
        return result

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise Interrupted("apphub is stopping: the step was cut short between two attempts")

