"""A supervisord program's environment: the text of its `environment=` option, and the
`supervisor-update` strategy that makes supervisord start that program, and only it, on its
current config (what `supervisorctl update NAME` does).

The encoder follows supervisord 4.2.5 (Debian 12's package, which the tests run; upstream's
current `dict_of_key_value_pairs` is the same), which reads a `[program:x]` section's
`environment=` in three steps:

1. `configparser.RawConfigParser` through `UnhosedConfigParser` (supervisor/options.py), with
   `inline_comment_prefixes=(';', '#')`: a `;` or `#` after any whitespace (`str.isspace`) ends
   the line. Each line is stripped; indented lines continue the option and are joined with `\\n`.
   The file is read in supervisord's locale encoding (UTF-8 under C.UTF-8) with universal
   newlines. When the config has an `[include]` section, `UnhosedConfigParser.expand_here` then
   replaces every `%(here)s` in every value, raw.
2. `ServerOptions._processes_from_section` expands the text once with `%` and a mapping
   (`expand`): a `%` must be doubled, and `%(program_name).0s` expands to nothing, which lets
   the encoder put nothing between a whitespace and a `;`/`#`, between `%` and `(here)s`, and
   around whitespace that a line's strip would take.
3. `supervisor/datatypes.py` `dict_of_key_value_pairs`: non-POSIX `shlex.shlex` tokens
   `NAME = VALUE ,`; a quoted token has no escapes and ends at its first closing quote, and
   `strip('\\'"')` removes every quote character at both ends of the value.

Each value is quoted with the quote character it does not contain. A line break in a value can
become a continuation line (indented by one space) when the caller asks for it and writes the
text into the file as it is; by default it is refused, as one-line INI writers cannot store it.
What cannot be expressed: a value holding both `'` and `"`, starting or ending with either,
holding a carriage return (universal newlines make it a line break) or a NUL (no process
environment can hold one), or that is not encodable text (a lone surrogate). Those are refused
with a ValueError that names the variable and never quotes the value (values can be secrets).
The `[supervisord]` section's own `environment=` is expanded twice by supervisord and is not
what this encodes.
"""

from __future__ import annotations

import re
import time
import xmlrpc.client
from collections.abc import Mapping
from typing import Any, Literal

from apphub.errors import BackendUnavailable, ReloadError
from apphub.reload.base import ActionSpec, ReloadFn
from apphub.reload.supervisor import FAULT_NAMES, SupervisorClient, _naming

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Expands to the empty string in a [program:x] section (its name, cut to no characters).
_NOTHING = "%(program_name).0s"
_QUOTES = ("'", '"')
_SUCCESS = 80
_CANT_REREAD = 92
_SPAWN_ERROR = 50
_ABNORMAL_TERMINATION = 40
_POLL = 0.1
# supervisord appends where a bad option is; the text before it can quote the option's value.
_SECTION_AT = re.compile(r" in section '([^']*)' \(file: '([^']*)'\)$")
_PARSE_AT = re.compile(r"parsing errors: '([^']*)'")
_LINE_AT = re.compile(r"\[line\s+(\d+)\]")


class SupervisorUpdateAction(ActionSpec):
    strategy: Literal["supervisor-update"]
    program: str


def environment_value(env: Mapping[str, str], *, multiline: bool = False) -> str:
    """The text of a `[program:x]` `environment=` option that supervisord reads back as `env`.

    A value with a line break is refused unless `multiline`: supervisord takes it only as
    continuation lines, and a writer of one-line INI values (apphub.store.inidoc) cannot store
    those. Raises ValueError naming the variable (never quoting its value) for a name that is not
    an environment name or a value that supervisord cannot carry exactly.
    """
    pairs = []
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            raise ValueError(f"environment variable {name!r}: not a valid name (letters, digits and _, "
                             "not starting with a digit)")
        why = _why_not_carried(value, multiline)
        if why is not None:
            raise ValueError(f"environment variable {name}: its value {why}")
        quote = "'" if '"' in value else '"'
        pairs.append(f"{name}={quote}{_escaped(value)}{quote}")
    return ",".join(pairs)


def _why_not_carried(value: str, multiline: bool) -> str | None:
    if "\r" in value:
        return "holds a carriage return, which supervisord reads as a line break"
    if "\n" in value and not multiline:
        return "holds a line break, which supervisord takes only as continuation lines (multiline=True)"
    if "\0" in value:
        return "holds a NUL character, which no process environment can"
    if value.startswith(_QUOTES) or value.endswith(_QUOTES):
        return "starts or ends with a quote character, which supervisord strips"
    if "'" in value and '"' in value:
        return "holds both ' and \", and supervisord's quoting has no escape"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate, which cannot be written as text"
    return None


def _escaped(value: str) -> str:
    """`%` doubled, each line break a continuation line (indented by one space), and an empty
    expansion wherever configparser would otherwise strip whitespace or see a comment."""
    pieces = value.split("\n")
    lines = []
    for number, piece in enumerate(pieces):
        text = _escaped_line(piece)
        if number > 0 and (piece[:1].isspace() or piece.startswith((";", "#"))):
            text = _NOTHING + text
        if number < len(pieces) - 1 and piece[-1:].isspace():
            text += _NOTHING
        lines.append(text)
    return "\n ".join(lines)


def _escaped_line(piece: str) -> str:
    out = []
    for index, char in enumerate(piece):
        if char == "%":
            out.append("%%")
            if piece.startswith("(here)s", index + 1):  # `%%(here)s` would meet expand_here
                out.append(_NOTHING)
        else:
            out.append(char)
            if char.isspace() and piece[index + 1:index + 2] in (";", "#"):  # else an inline comment
                out.append(_NOTHING)
    return "".join(out)


def supervisor_env_strategies(client: SupervisorClient) -> dict[str, ReloadFn]:
    """The `supervisor-update` strategy, through `client`."""

    def update(service: str, action: ActionSpec) -> None:
        if not isinstance(action, SupervisorUpdateAction):
            raise ReloadError(f"service {service}: supervisor-update was given a {action.strategy} action")
        with _naming(service, "supervisor-update"):
            ProgramUpdate(client, action.program, action.timeout).run()

    return {"supervisor-update": update}


class ProgramUpdate:
    """Reread supervisord's config and bring one program (its own process group) onto it:
    replaced when its section changed, added when new, restarted when unchanged; returns once
    every process of the group is RUNNING. No other group is stopped, started or replaced.

    A program inside a `[group:x]` section is not its own group: supervisord answers BAD_NAME.
    """

    def __init__(self, client: SupervisorClient, program: str, timeout: float) -> None:
        self.client = client
        self.program = program
        self.budget = timeout
        self.deadline = time.monotonic() + timeout

    def run(self) -> None:
        added, changed, removed = self._reread()
        if self.program in removed:
            raise ReloadError(f"supervisord program {self.program!r} is no longer in supervisord's config "
                              "(reloadConfig lists it as removed); it was left as it is")
        if self.program in changed:
            self._stop()
            self._call("remove", "removeProcessGroup", self.program)
            self._call("add", "addProcessGroup", self.program)
        elif self.program in added:
            self._call("add", "addProcessGroup", self.program)
        else:
            self._stop()
        # autostart may already have started it: startProcessGroup skips what is not stopped.
        self._check(self._call("start", "startProcessGroup", self.program, True), "start")
        self._wait_running()

    def _reread(self) -> tuple[list[str], list[str], list[str]]:
        try:
            answer = self.client.call(self.program, "reloadConfig", deadline=self.deadline, budget=self.budget)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != _CANT_REREAD:
                raise self.client.fault_error(self.program, "reread the config for", fault) from fault
            # Not `from fault`: its text can quote the environment= line, secrets included.
            raise ReloadError(f"supervisord could not reread its config for program {self.program!r}: CANT_REREAD"
                              f"{_where(str(fault.faultString))} (its message is not quoted: it can hold "
                              "environment values)") from None
        try:
            [[added, changed, removed]] = answer
            return list(added), list(changed), list(removed)
        except (TypeError, ValueError):
            raise BackendUnavailable(f"supervisord at {self.client.url} answered reloadConfig with a "
                                     f"{type(answer).__name__} that is not [[added, changed, removed]]") from None

    def _stop(self) -> None:
        self._check(self._call("stop", "stopProcessGroup", self.program, True), "stop")

    def _call(self, doing: str, method: str, *args: Any) -> Any:
        try:
            return self.client.call(self.program, method, *args, deadline=self.deadline, budget=self.budget)
        except xmlrpc.client.Fault as fault:
            raise self.client.fault_error(self.program, doing, fault) from fault

    def _check(self, results: Any, doing: str) -> None:
        """startProcessGroup and stopProcessGroup answer a status per process instead of a Fault."""
        for result in results if isinstance(results, list) else []:
            status = result.get("status", _SUCCESS) if isinstance(result, dict) else _SUCCESS
            if status != _SUCCESS:
                fault = xmlrpc.client.Fault(status, str(result.get("description", FAULT_NAMES.get(status, ""))))
                raise self.client.fault_error(self._namespec(result), doing, fault)

    def _wait_running(self) -> None:
        while True:
            infos = [info for info in self._call("look up", "getAllProcessInfo") if info.get("group") == self.program]
            if not infos:
                raise ReloadError(f"supervisord program {self.program!r}: no process of it after the update")
            for info in infos:
                state = info.get("statename")
                if state not in ("STARTING", "RUNNING"):
                    code = _SPAWN_ERROR if info.get("spawnerr") else _ABNORMAL_TERMINATION
                    namespec = self._namespec(info)
                    raise self.client.fault_error(namespec, "start",
                                                  xmlrpc.client.Fault(code, f"{FAULT_NAMES[code]}: {namespec}"))
            if all(info.get("statename") == "RUNNING" for info in infos):
                return
            if time.monotonic() + _POLL > self.deadline:
                raise ReloadError(f"supervisord program {self.program!r}: not RUNNING within {self.budget:g} s "
                                  f"(it is {', '.join(sorted({str(info.get('statename')) for info in infos}))})")
            time.sleep(_POLL)

    def _namespec(self, result: dict[str, Any]) -> str:
        name = str(result.get("name", self.program))
        return self.program if name == self.program else f"{self.program}:{name}"


def _where(text: str) -> str:
    """Where a CANT_REREAD fault says the error is (section and file, or file and lines), nothing more."""
    found = _SECTION_AT.search(text)
    if found:
        return f" in section [{found[1]}] of {found[2]}"
    found = _PARSE_AT.search(text)
    if found:
        lines = ", ".join(_LINE_AT.findall(text))
        return f" in {found[1]}" + (f" at line {lines}" if lines else "")
    return ""
