"""A program's environment through supervisord: the `environment=` encoder against supervisord's
own config reader, and the `supervisor-update` strategy against a real supervisord.

The encoder's proof runs supervisor's `ServerOptions` (the package and the Python that run
/usr/bin/supervisord, not ours) on a config with an `[include]`d `[program:p]` section, in one
helper process for the whole module.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from apphub.errors import BackendUnavailable, HealthCheckFailed, ReloadError
from apphub.reload.base import NO_ACTION
from apphub.reload.health import HealthChecker, HealthSpec
from apphub.reload.supervisor import SupervisorClient, SupervisorProbe
from apphub.reload.supervisor_env import (
    SupervisorUpdateAction,
    _escaped,
    environment_value,
    supervisor_env_strategies,
)
from tests.reload.conftest import PYTHON, SUPERVISORD, Supervisord

# -- the encoder, read back by supervisor's own code ----------------------------------------------

READER_PY = textwrap.dedent("""\
    import json, os, sys
    from supervisor.options import ServerOptions

    folder = sys.argv[1]
    main = os.path.join(folder, "supervisord.conf")
    with open(main, "w", encoding="utf-8") as handle:
        handle.write(f"[supervisord]\\nlogfile={folder}/s.log\\npidfile={folder}/s.pid\\n"
                     "[include]\\nfiles = program.conf\\n")
    for request in sys.stdin:
        try:
            with open(os.path.join(folder, "program.conf"), "w", encoding="utf-8") as handle:
                handle.write("[program:p]\\ncommand=/bin/true\\nenvironment=" + json.loads(request) + "\\n")
            options = ServerOptions()
            options.configfile = main
            options.process_config(do_usage=False)
            answer = {"env": options.process_group_configs[0].process_configs[0].environment}
        except Exception as exc:
            answer = {"error": type(exc).__name__}
        print(json.dumps(answer), flush=True)
""")

Reader = Callable[[str], "dict[str, str] | None"]


@pytest.fixture(scope="module")
def supervisor_reads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reader]:
    """What supervisord's config reader makes of an `environment=` text (None: it refuses it)."""
    interpreter = Path(SUPERVISORD).read_text().splitlines()[0].removeprefix("#!").split()[0]
    folder = tmp_path_factory.mktemp("supervisor-reads")
    process = subprocess.Popen([interpreter, "-c", READER_PY, str(folder)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, encoding="ascii")
    assert process.stdin is not None
    assert process.stdout is not None

    def read(text: str) -> dict[str, str] | None:
        process.stdin.write(json.dumps(text) + "\n")
        process.stdin.flush()
        answer = json.loads(process.stdout.readline())
        return answer.get("env")

    try:
        yield read
    finally:
        process.stdin.close()
        process.wait(timeout=10)
        process.stdout.close()


# Pieces that supervisord's reader treats specially, and plain ones around them.
FRAGMENTS = [
    "%", "%%", "%(here)s", "(here)s", "%(program_name)s", "%s", "%(", " ", "\t", "\x0b", "\x0c", "\x1c", "\x85",
    "\xa0", "\u2028", "\u3000", "#", ";", " #", "\t;", ",", "=", "'", '"', "\\", "$", "${X}", "`", "(", ")",
    "[x]", "\n", "\n ", "\n#", "\r", "\0", "ü", "日本", "🎉", "a", "Z", "0", ":", "/", "s", "x=1", " = ",
]
values = st.lists(st.sampled_from(FRAGMENTS) | st.characters(codec="utf-8"), max_size=12).map("".join)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)


def every_writing(value: str) -> Iterator[str]:
    """The ways the grammar offers to write a value: bare or in either quote, with `%` doubled
    alone or with the encoder's empty expansions and continuation lines too."""
    for body in (value.replace("%", "%%"), _escaped(value)):
        for quote in ("", '"', "'"):
            yield f"V={quote}{body}{quote}"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_a_value_is_refused_exactly_when_supervisord_cannot_read_it_back(supervisor_reads, value):
    try:
        text: str | None = environment_value({"V": value}, multiline=True)
        refused = ""
    except ValueError as exc:
        text, refused = None, str(exc)
    if text is not None:
        assert supervisor_reads(text) == {"V": value}, text
    else:
        assert refused.startswith("environment variable V: its value ")
        if "\0" in value:
            return  # the reader keeps it, execve cannot: test_no_process_environment_holds_a_nul
        for writing in every_writing(value):
            assert supervisor_reads(writing) != {"V": value}, writing


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(env=st.dictionaries(names, values, max_size=5))
def test_several_variables_read_back_exactly(supervisor_reads, env):
    try:
        text = environment_value(env, multiline=True)
    except ValueError:
        assume(False)
    assert supervisor_reads(text) == env


def test_a_line_break_is_refused_unless_asked_for(supervisor_reads):
    with pytest.raises(ValueError, match=r"^environment variable PEM: its value holds a line break") as raised:
        environment_value({"PEM": "-----BEGIN s3cr3t-----\nMIIB\n-----END-----"})
    assert "s3cr3t" not in str(raised.value)
    text = environment_value({"PEM": "-----BEGIN s3cr3t-----\nMIIB\n-----END-----"}, multiline=True)
    assert text.count("\n ") == 2
    assert supervisor_reads(text) == {"PEM": "-----BEGIN s3cr3t-----\nMIIB\n-----END-----"}


@pytest.mark.parametrize(("value", "naive"), [
    ("p %(here)s", "expand_here turns `%%(here)s` into `%` and the folder: a format error"),
    ("pass #1", "` #` starts an inline comment"),
    ("a\tb ;c", "` ;` starts an inline comment"),
    ("line1\n  line2 \nline3", "each continuation line is stripped"),
    ("x\n#y", "a line starting with `#` is a comment"),
])
def test_what_a_naive_quoting_loses_the_encoder_keeps(supervisor_reads, value, naive):
    assert supervisor_reads('V="' + value.replace("%", "%%").replace("\n", "\n ") + '"') != {"V": value}, naive
    assert supervisor_reads(environment_value({"V": value}, multiline=True)) == {"V": value}


def test_an_empty_environment_is_an_empty_option(supervisor_reads):
    assert environment_value({}) == ""
    assert supervisor_reads("") == {}


@pytest.mark.parametrize(("value", "why"), [
    ("'s3cr3t", "starts or ends with a quote"),
    ('s3cr3t"', "starts or ends with a quote"),
    ("it's \"s3cr3t\" here", "both ' and \""),
    ("s3cr3t\r\nnext", "carriage return"),
    ("s3cr3t\0", "NUL"),
    ("s3cr3t\udcff", "lone surrogate"),
])
def test_a_refused_value_is_named_by_its_variable_never_quoted(value, why):
    with pytest.raises(ValueError, match=r"^environment variable DB_PASSWORD: its value ") as raised:
        environment_value({"OK": "fine", "DB_PASSWORD": value})
    assert why in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


def test_no_process_environment_holds_a_nul():
    with pytest.raises(ValueError, match="embedded null byte"):
        subprocess.run(["/bin/true"], env={"V": "a\0b"}, check=False)


def test_a_lone_surrogate_cannot_be_written_to_the_config_file():
    with pytest.raises(UnicodeEncodeError):
        "a\udcff".encode()


@pytest.mark.parametrize("name", ["", "1ST", "A-B", "A B", "A=B", "ÄPFEL", "A\nB"])
def test_a_name_that_is_not_an_environment_name_is_refused(name):
    with pytest.raises(ValueError, match="not a valid name") as raised:
        environment_value({name: "value"})
    assert repr(name) in str(raised.value)


# -- the supervisor-update strategy against a real supervisord ---------------------------------------

# Writes its pid and environment to argv[1] (whole, by rename), then sleeps; exits 3 at once when
# APPHUB_T_PORT is not a number, as a service with a bad setting would.
DUMP_ENV_PY = textwrap.dedent("""\
    import json, os, sys, time
    out = sys.argv[1]
    if not os.environ.get("APPHUB_T_PORT", "0").isdigit():
        sys.stderr.write("config error: APPHUB_T_PORT is not a port number\\n")
        sys.exit(3)
    with open(out + ".tmp", "w", encoding="utf-8") as handle:
        json.dump({"pid": os.getpid(), "env": dict(os.environ)}, handle)
    os.replace(out + ".tmp", out)
    time.sleep(1000)
""")
PREFIX = "APPHUB_T_"
SECRET = "hunter2-s3cret"
AWKWARD = {
    "APPHUB_T_SPACES": "  leading and trailing  ",
    "APPHUB_T_SHELL": "$HOME ${PATH:-x} $(id -u) `id` *.conf ~",
    "APPHUB_T_PERCENT": "100% %(here)s %(program_name)s %%s %(ENV_HOME)s %",
    "APPHUB_T_COMMENTS": "a #b ;c\t#d\u00a0;e #",
    "APPHUB_T_SEPARATORS": "k=v,k2=v2;x,=,",
    "APPHUB_T_BACKSLASHES": "C:\\dir\\new \\t \\\\ end\\",
    "APPHUB_T_UNICODE": "pässwörd ✓ 日本語 🎉 \u2028 \u3000x",
    "APPHUB_T_SINGLE": "it's",
    "APPHUB_T_DOUBLE": 'say "hi" twice',
    "APPHUB_T_PEM": "-----BEGIN KEY-----\nMIIB #not a comment\n  indented ;\n\n-----END KEY-----\n",
    "APPHUB_T_EMPTY": "",
}


def update_action(program: str = "envtest", timeout: float = 30) -> SupervisorUpdateAction:
    return SupervisorUpdateAction(strategy="supervisor-update", program=program, timeout=timeout)


def write_envtest(conf: Path, script: Path, out: Path, environment_line: str, *, autostart: bool = True,
                  startsecs: int = 1) -> None:
    conf.write_text(
        f"[program:envtest]\ncommand={PYTHON} {script} {out}\n{environment_line}\n"
        f"autostart={str(autostart).lower()}\nstartsecs={startsecs}\nstartretries=0\nautorestart=false\n"
        "stopwaitsecs=5\n", encoding="utf-8")


@dataclass
class EnvProgram:
    """supervisord with `other` in its main config and `[program:envtest]` in an included file."""

    daemon: Supervisord
    conf: Path
    script: Path
    out: Path
    pids: list[int] = field(default_factory=list)

    def write(self, env: dict[str, str], *, autostart: bool = True, startsecs: int = 1) -> None:
        write_envtest(self.conf, self.script, self.out, f"environment={environment_value(env, multiline=True)}",
                      autostart=autostart, startsecs=startsecs)

    def write_raw(self, environment_line: str) -> None:
        write_envtest(self.conf, self.script, self.out, environment_line)

    def update(self, service: str = "envtest-svc", program: str = "envtest") -> None:
        supervisor_env_strategies(self.daemon.client())["supervisor-update"](service, update_action(program))

    def seen(self) -> tuple[int, dict[str, str]]:
        """The pid of the program's last start and the APPHUB_T_ variables it saw."""
        data = json.loads(self.out.read_text(encoding="utf-8"))
        self.pids.append(data["pid"])
        return data["pid"], {name: value for name, value in data["env"].items() if name.startswith(PREFIX)}

    def pid(self, program: str) -> int:
        info = self.daemon.client().state(program)
        assert info["statename"] == "RUNNING", info
        return int(info["pid"])


@pytest.fixture
def env_program(start_supervisord, tmp_path) -> Iterator[Callable[[dict[str, str] | None], EnvProgram]]:
    started: list[EnvProgram] = []

    def start(env: dict[str, str] | None) -> EnvProgram:
        confd = tmp_path / "conf.d"
        confd.mkdir()
        script = tmp_path / "dump_env.py"
        script.write_text(DUMP_ENV_PY)
        conf, out = confd / "envtest.conf", tmp_path / "envtest.json"
        if env is not None:
            write_envtest(conf, script, out, f"environment={environment_value(env, multiline=True)}")
        # The conftest writes [program:NAME] sections; the [include] section rides after the last one.
        daemon = start_supervisord({
            "other": f"command=/bin/sleep 1000\nstartsecs=1\nautorestart=false\n\n[include]\nfiles = {confd}/*.conf",
        })
        program = EnvProgram(daemon, conf, script, out)
        started.append(program)
        program.daemon.wait_state("other", "RUNNING")
        if env is not None:
            program.daemon.wait_state("envtest", "RUNNING")
        return program

    yield start
    # envtest is not in the main config, so the conftest's teardown does not know its pid.
    for program in started:
        if program.out.exists():
            program.seen()
        program.daemon.orphans.extend(program.pids)


def test_update_gives_the_program_exactly_its_new_environment_and_restarts_nothing_else(env_program):
    program = env_program({"APPHUB_T_KEEP": "same", "APPHUB_T_GONE": "to be removed", "APPHUB_T_CHANGED": "old"})
    old_pid, old_env = program.seen()
    assert old_env == {"APPHUB_T_KEEP": "same", "APPHUB_T_GONE": "to be removed", "APPHUB_T_CHANGED": "old"}
    other = program.pid("other")

    new = {"APPHUB_T_KEEP": "same", "APPHUB_T_CHANGED": "new", **AWKWARD}
    program.write(new)
    program.update()

    pid, seen = program.seen()
    assert seen == new  # every awkward value exactly, and APPHUB_T_GONE gone
    assert pid != old_pid
    assert program.pid("envtest") == pid  # RUNNING when the strategy returned
    assert program.pid("other") == other


def test_an_unchanged_program_is_restarted_on_the_same_environment(env_program):
    program = env_program(AWKWARD)
    old_pid, _ = program.seen()
    other = program.pid("other")

    program.update()

    pid, seen = program.seen()
    assert pid != old_pid
    assert seen == AWKWARD
    assert program.pid("envtest") == pid
    assert program.pid("other") == other


def test_a_program_new_to_the_config_is_added_and_started_even_without_autostart(env_program):
    program = env_program(None)
    other = program.pid("other")
    assert not program.out.exists()

    program.write({"APPHUB_T_NEW": "here now"}, autostart=False)
    program.update()

    pid, seen = program.seen()
    assert seen == {"APPHUB_T_NEW": "here now"}
    assert program.pid("envtest") == pid
    assert program.pid("other") == other

    program.write({"APPHUB_T_NEW": "changed, still not autostart"}, autostart=False)
    program.update()
    assert program.seen()[1] == {"APPHUB_T_NEW": "changed, still not autostart"}
    assert program.pid("other") == other


def test_a_config_that_makes_the_program_exit_fails_and_the_old_one_brings_it_back(env_program):
    old = {"APPHUB_T_PORT": "8080", "APPHUB_T_NAME": "api #1"}
    program = env_program(old)
    other = program.pid("other")

    # startsecs=3: supervisord reaps a child once per turn of its 1 s loop (see test_supervisor.py).
    program.write({"APPHUB_T_PORT": "not-a-port", "APPHUB_T_SECRET": SECRET}, startsecs=3)
    with pytest.raises(ReloadError) as raised:
        program.update("api-svc")

    message = str(raised.value)
    assert message.startswith("service api-svc: supervisor-update: ")
    assert "'envtest'" in message
    assert "SPAWN_ERROR" in message
    assert "Exited too quickly" in message
    assert "config error: APPHUB_T_PORT is not a port number" in message  # the program's own stderr
    assert SECRET not in "".join(traceback.format_exception(raised.value))
    checker = HealthChecker({"supervisor": SupervisorProbe(program.daemon.client())})
    with pytest.raises(HealthCheckFailed, match=r"'envtest' is (FATAL|BACKOFF)"):
        checker.wait_healthy("api-svc", HealthSpec(supervisor="envtest", timeout=0.5, interval=0.1))
    assert program.pid("other") == other

    program.write(old)
    program.update("api-svc")

    pid, seen = program.seen()
    assert seen == old
    assert program.pid("envtest") == pid
    assert program.pid("other") == other


def test_a_config_supervisord_cannot_read_fails_without_quoting_it_and_stops_nothing(env_program):
    program = env_program({"APPHUB_T_A": "one"})
    pid, other = program.pid("envtest"), program.pid("other")

    program.write_raw(f'environment=APPHUB_T_A="fine",APPHUB_T_SECRET={SECRET},dangling')
    with pytest.raises(ReloadError) as raised:
        program.update()

    message = str(raised.value)
    assert "service envtest-svc: supervisor-update: " in message
    assert "CANT_REREAD" in message
    assert f"in section [program:envtest] of {program.conf}" in message
    assert SECRET not in "".join(traceback.format_exception(raised.value))
    assert program.pid("envtest") == pid
    assert program.pid("other") == other


def test_a_program_whose_file_was_removed_is_left_as_it_is(env_program):
    program = env_program({"APPHUB_T_A": "one"})
    pid = program.pid("envtest")

    program.conf.unlink()
    with pytest.raises(ReloadError, match=r"'envtest' is no longer in supervisord's config.*removed"):
        program.update()
    assert program.pid("envtest") == pid


def test_a_program_supervisord_does_not_know_is_bad_name(env_program):
    program = env_program(None)

    with pytest.raises(ReloadError, match=r"^service x-svc: supervisor-update: .*'nosuch'.*BAD_NAME"):
        program.update("x-svc", program="nosuch")


def test_supervisord_down_is_backend_unavailable_naming_the_service(env_program):
    program = env_program({"APPHUB_T_A": "one"})
    program.seen()
    program.daemon.kill_hard()

    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"^service envtest-svc: supervisor-update: .*cannot be reached"):
        program.update()
    assert time.monotonic() - started < 5


def test_the_strategy_refuses_another_kind_of_action():
    update = supervisor_env_strategies(SupervisorClient("unix:///nonexistent/supervisor.sock"))["supervisor-update"]

    with pytest.raises(ReloadError, match="supervisor-update was given a none action"):
        update("svc", NO_ACTION)
