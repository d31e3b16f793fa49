"""Host-process reload strategies: `signal` (to the pid in a pidfile) and `exec` (run a command).

`exec` never goes through a shell: the manifest gives an argv. It runs in a session of its own so
that on timeout the whole process group is killed, not only the first process (`sh -c` would
otherwise leave its children running, holding the output pipes open).

A command's output is quoted in whole lines and never cut inside one: it can print a secret that
the service's files hold, and only whoever shows the message knows the secrets, masks them, and
then shortens the text (apphub.sync.redact). A cut made here, before that, could leave part of a
secret that no mask matches any more (issue 8). A secret never spans lines (store/validate.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal as signals
import subprocess
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from apphub.errors import ReloadError
from apphub.reload.base import ActionSpec, ReloadFn

log = logging.getLogger(__name__)

_TAIL_LINES = 5


class SignalAction(ActionSpec):
    strategy: Literal["signal"]
    pidfile: str
    signal: str = "HUP"


class ExecAction(ActionSpec):
    strategy: Literal["exec"]
    command: list[str] = Field(min_length=1)


@dataclass(frozen=True)
class CommandResult:
    """What a command did: its exit status (None when killed on timeout) and its output."""

    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False

    def describe_exit(self) -> str:
        code = self.returncode
        if code is not None and code < 0:
            try:
                return f"signal {signals.Signals(-code).name}"
            except ValueError:
                return f"signal {-code}"
        return f"exit status {code}"

    def tail(self) -> str:
        """The last lines of stderr (stdout when stderr is empty), whole, joined on one line."""
        for text in (self.stderr, self.stdout):
            lines = [line.rstrip() for line in text.splitlines() if line.strip()]
            if lines:
                return " | ".join(lines[-_TAIL_LINES:])
        return ""


class CommandNotRunnable(Exception):
    """The command could not be started at all (missing, not executable)."""


def run_command(argv: list[str], timeout: float) -> CommandResult:
    """Run argv without a shell, stdin closed, output captured; kill its process group on timeout."""
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, encoding="utf-8", errors="replace",
        )
    except FileNotFoundError as exc:
        raise CommandNotRunnable(f"{argv[0]!r} does not exist (no such file or not on PATH)") from exc
    except PermissionError as exc:
        raise CommandNotRunnable(f"{argv[0]!r} is not executable (permission denied)") from exc
    except OSError as exc:
        raise CommandNotRunnable(f"{argv[0]!r} cannot be started: {exc}") from exc
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        try:
            stdout, stderr = process.communicate(timeout=2.0)
        except subprocess.TimeoutExpired:
            # A descendant left the group (setsid) and holds the pipes: give up on the output.
            process.kill()
            process.wait()
            stdout, stderr = "", ""
        return CommandResult(argv, None, stdout, stderr, timed_out=True)
    return CommandResult(argv, process.returncode, stdout, stderr)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.killpg(process.pid, signals.SIGKILL)


def signal_number(name: str) -> signals.Signals:
    """`HUP`, `SIGHUP` or `1` as a signal; ValueError for anything else."""
    text = name.strip().upper()
    if text.isdigit():
        return signals.Signals(int(text))
    try:
        return signals.Signals[text if text.startswith("SIG") else "SIG" + text]
    except KeyError:
        raise ValueError(f"{name!r} is not a signal name (HUP, USR1, TERM, ...)") from None


def send_signal(pidfile: str, signal: str) -> int:
    """Send `signal` to the pid that `pidfile` holds; returns the pid. ReloadError says what is wrong."""
    try:
        number = signal_number(signal)
    except ValueError as exc:
        raise ReloadError(str(exc)) from exc
    try:
        with open(pidfile, encoding="ascii", errors="replace") as handle:
            text = handle.read(64).strip()
    except FileNotFoundError as exc:
        raise ReloadError(f"the pidfile {pidfile} does not exist (is the service running?)") from exc
    except OSError as exc:
        raise ReloadError(f"the pidfile {pidfile} cannot be read: {exc}") from exc
    first = text.split()[0] if text.split() else ""
    # Refuse 0 and negatives: os.kill would signal a whole process group, or every process. What
    # it holds instead is not quoted: a cut quote of a file could be a cut secret.
    if not first.isdigit() or int(first) <= 0:
        raise ReloadError(f"the pidfile {pidfile} does not hold a process id"
                          + (" (it is empty)" if not text else " (it begins with something else)"))
    pid = int(first)
    try:
        os.kill(pid, number)
    except ProcessLookupError as exc:
        raise ReloadError(
            f"the pidfile {pidfile} names pid {pid}, which is not running (a stale pidfile: the service is down)"
        ) from exc
    except PermissionError as exc:
        raise ReloadError(f"not allowed to send {number.name} to pid {pid} (from {pidfile})") from exc
    return pid


def process_strategies() -> dict[str, ReloadFn]:
    """The `signal` and `exec` strategies."""

    def signal(service: str, action: ActionSpec) -> None:
        if not isinstance(action, SignalAction):
            raise ReloadError(f"service {service}: signal was given a {action.strategy} action")
        try:
            pid = send_signal(action.pidfile, action.signal)
        except ReloadError as exc:
            raise ReloadError(f"service {service}: signal {action.signal}: {exc}") from exc
        log.info("service %s: sent %s to pid %d (%s)", service, action.signal, pid, action.pidfile)

    def exec_(service: str, action: ActionSpec) -> None:
        if not isinstance(action, ExecAction):
            raise ReloadError(f"service {service}: exec was given a {action.strategy} action")
        shown = " ".join(action.command)
        try:
            result = run_command(action.command, action.timeout)
        except CommandNotRunnable as exc:
            raise ReloadError(f"service {service}: exec `{shown}`: {exc}") from exc
        tail = result.tail()
        if result.timed_out:
            raise ReloadError(
                f"service {service}: exec `{shown}` did not finish within {action.timeout:g} s and was killed"
                + (f"; its last output: {tail}" if tail else "")
            )
        if result.returncode != 0:
            raise ReloadError(
                f"service {service}: exec `{shown}` failed with {result.describe_exit()}"
                + (f": {tail}" if tail else " and printed nothing")
            )
        # Not its output: a command run on a service's files may print a secret they hold.
        log.info("service %s: exec `%s` succeeded", service, shown)

    return {"signal": signal, "exec": exec_}
