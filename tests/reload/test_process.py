"""The `signal` and `exec` strategies against real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphub.errors import ReloadError
from apphub.reload.process import process_strategies
from apphub.sync.manifest import ExecAction, SignalAction

PYTHON = sys.executable

# A daemon that writes its pidfile and appends each signal it gets to a marker file.
DAEMON_PY = textwrap.dedent("""\
    import os, signal, sys, time
    pidfile, marker = sys.argv[1], sys.argv[2]

    def on_signal(signum, frame):
        with open(marker, "a") as handle:
            handle.write(signal.Signals(signum).name + "\\n")

    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGUSR1, on_signal)
    with open(pidfile, "w") as handle:
        handle.write(f"{os.getpid()}\\n")
    while True:
        time.sleep(0.05)
""")


def wait_for(condition, within: float = 5.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {within} s"
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON_PY)
    pidfile, marker = tmp_path / "daemon.pid", tmp_path / "signals"
    process = subprocess.Popen([PYTHON, str(script), str(pidfile), str(marker)])
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().endswith("\n"), what="the pidfile")
        yield process, pidfile, marker
    finally:
        process.kill()
        process.wait()


def signal_action(pidfile: Path | str, signal: str = "HUP") -> SignalAction:
    return SignalAction(strategy="signal", pidfile=str(pidfile), signal=signal)


def exec_action(*command: str, timeout: float = 10) -> ExecAction:
    return ExecAction(strategy="exec", command=list(command), timeout=timeout)


# -- signal ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signal", "seen"), [("HUP", "SIGHUP"), ("SIGUSR1", "SIGUSR1"), ("10", "SIGUSR1")])
def test_signal_reaches_the_process_in_the_pidfile(daemon, signal, seen):
    process, pidfile, marker = daemon

    process_strategies()["signal"]("web", signal_action(pidfile, signal))

    wait_for(lambda: marker.exists() and marker.read_text(), what=f"{seen} reaching the daemon")
    assert marker.read_text() == f"{seen}\n"
    assert process.poll() is None  # reloaded, not killed


def test_signal_with_a_stale_pidfile_says_the_service_is_down(tmp_path):
    gone = subprocess.Popen([PYTHON, "-c", "pass"])
    gone.wait()
    pidfile = tmp_path / "web.pid"
    pidfile.write_text(f"{gone.pid}\n")

    with pytest.raises(ReloadError) as raised:
        process_strategies()["signal"]("web", signal_action(pidfile))

    message = str(raised.value)
    assert message.startswith("service web: signal HUP: ")
    assert f"names pid {gone.pid}, which is not running" in message
    assert "stale pidfile" in message


def test_signal_without_a_pidfile_fails_clearly(tmp_path):
    with pytest.raises(ReloadError, match=r"service web: signal HUP: the pidfile .*/none.pid does not exist"):
        process_strategies()["signal"]("web", signal_action(tmp_path / "none.pid"))


@pytest.mark.parametrize("content", ["", "not-a-pid\n", "0\n", "-1\n"])
def test_signal_refuses_a_pidfile_without_a_process_id(tmp_path, content):
    # 0 and -1 matter most: os.kill would signal our own process group, or every process.
    pidfile = tmp_path / "web.pid"
    pidfile.write_text(content)

    with pytest.raises(ReloadError, match="does not hold a process id"):
        process_strategies()["signal"]("web", signal_action(pidfile))


def test_signal_with_an_unknown_signal_name_sends_nothing(daemon):
    process, pidfile, marker = daemon

    with pytest.raises(ReloadError, match=r"'RELOAD' is not a signal name"):
        process_strategies()["signal"]("web", signal_action(pidfile, "RELOAD"))

    assert process.poll() is None
    assert not marker.exists()


# -- exec -----------------------------------------------------------------------------------------


def test_exec_runs_the_command_and_keeps_its_output_to_itself(tmp_path, capfd):
    done = tmp_path / "done"
    code = f"import pathlib; print('reloading...'); pathlib.Path({str(done)!r}).write_text('yes')"

    process_strategies()["exec"]("web", exec_action(PYTHON, "-c", code))

    assert done.read_text() == "yes"
    captured = capfd.readouterr()
    assert "reloading..." not in captured.out + captured.err


def test_exec_passes_arguments_without_a_shell(tmp_path):
    seen, pwned = tmp_path / "argv", tmp_path / "pwned"
    argument = f"$(touch {pwned}); echo hi > {pwned}"
    code = f"import pathlib, sys; pathlib.Path({str(seen)!r}).write_text(sys.argv[1])"

    process_strategies()["exec"]("web", exec_action(PYTHON, "-c", code, argument))

    assert seen.read_text() == argument
    assert not pwned.exists()


def test_exec_failure_quotes_the_last_lines_of_stderr():
    code = (
        "import sys; print('to stdout'); "
        "sys.stderr.write(''.join(f'error line {n}\\n' for n in range(1, 9))); sys.exit(2)"
    )

    with pytest.raises(ReloadError) as raised:
        process_strategies()["exec"]("proxy", exec_action(PYTHON, "-c", code))

    message = str(raised.value)
    assert message.startswith("service proxy: exec `")
    assert "failed with exit status 2" in message
    assert "error line 4 | error line 5 | error line 6 | error line 7 | error line 8" in message
    assert "error line 3" not in message
    quoted = message.split("failed with", 1)[1]
    assert "to stdout" not in quoted  # stderr is the cause; stdout only when stderr is empty


def test_exec_failure_with_only_stdout_quotes_stdout():
    with pytest.raises(ReloadError, match=r"exit status 1: nginx: \[emerg\] unknown directive"):
        process_strategies()["exec"]("proxy", exec_action(
            PYTHON, "-c", "import sys; print('nginx: [emerg] unknown directive'); sys.exit(1)"))


def test_exec_that_outlasts_its_timeout_is_killed_with_its_children(tmp_path):
    child_pidfile = tmp_path / "child.pid"
    # The command starts a child of its own and waits for it, as `sh -c "a; b"` would.
    code = textwrap.dedent(f"""\
        import pathlib, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pathlib.Path({str(child_pidfile)!r}).write_text(str(child.pid))
        print("waiting for the child", flush=True)
        child.wait()
    """)

    started = time.monotonic()
    with pytest.raises(ReloadError) as raised:
        process_strategies()["exec"]("web", exec_action(PYTHON, "-c", code, timeout=1.0))
    took = time.monotonic() - started

    assert took < 4, f"the timeout of 1 s took {took:.1f} s"
    assert "did not finish within 1 s and was killed" in str(raised.value)
    assert "waiting for the child" in str(raised.value)  # the output so far is kept
    child = int(child_pidfile.read_text())
    wait_for(lambda: not pid_alive(child), within=3, what="the grandchild being killed")


def test_exec_of_a_missing_command_says_so():
    with pytest.raises(ReloadError, match=r"service web: exec `/nonexistent/reload-web --now`: .* does not exist"):
        process_strategies()["exec"]("web", exec_action("/nonexistent/reload-web", "--now"))


def test_exec_of_a_file_that_is_not_executable_says_so(tmp_path):
    script = tmp_path / "reload.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)  # even root cannot execute a file without an x bit
    with pytest.raises(ReloadError, match="is not executable"):
        process_strategies()["exec"]("web", exec_action(str(script)))


def test_signal_does_not_quote_what_a_pidfile_holds_instead_of_a_process_id(tmp_path):
    # A quote cut to a length is a secret cut in two, which no mask matches (issue 8).
    pidfile = tmp_path / "web.pid"
    pidfile.write_text("password=QXZJVWYQXZJVWYQXZJVWY\n")

    with pytest.raises(ReloadError) as raised:
        process_strategies()["signal"]("web", signal_action(pidfile))

    assert str(raised.value).endswith("does not hold a process id (it begins with something else)")
    assert "QXZJ" not in str(raised.value)
