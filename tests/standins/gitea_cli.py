"""`gitea admin user create`, as the Gitea stand-in runs it for its CLI bridge (service-apis.md §1.3).

Real Gitea has no HTTP call that makes the first admin: the initialiser runs the CLI inside the container.
In tests, `gitea-cli.sh` (installed as /usr/local/bin/gitea in a busybox container) posts its argv to the
stand-in's `POST /__standin/admin-user-create`, which parses it here with the flags and the error texts of
Gitea 1.26's `cmd/admin_user_create.go` (urfave/cli: `--flag value`, `--flag=value`, `-flag value`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Flags that take no value (a following word is not theirs); `--flag=false` still sets them.
BOOLEAN_FLAGS = {"admin", "random-password", "must-change-password", "access-token", "restricted"}
# The last six are Gitea's global flags, taken before the command as well as after it.
VALUE_FLAGS = {"username", "name", "password", "email", "random-password-length", "access-token-name",
               "access-token-scopes", "fullname", "user-type", "config", "c", "work-path", "w", "custom-path", "C"}
COMMAND = ["admin", "user", "create"]


@dataclass
class CliResult:
    exit_code: int
    output: str


class UsageError(ValueError):
    """The argv does not parse: urfave/cli prints "Incorrect Usage" and exits 1."""


def parse(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The positional words and the flags (name -> value; "true"/"false" for booleans) of an argv."""
    words: list[str] = []
    flags: dict[str, str] = {}
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if not word.startswith("-") or word in ("-", "--"):
            words.append(word)
            continue
        name, has_value, value = word.lstrip("-").partition("=")
        if name in BOOLEAN_FLAGS:
            flags[name] = value.lower() if has_value else "true"
            if flags[name] not in ("true", "false", "1", "0", "t", "f"):
                raise UsageError(f"invalid boolean value {value!r} for -{name}")
            flags[name] = "true" if flags[name] in ("true", "1", "t") else "false"
        elif name in VALUE_FLAGS:
            if not has_value:
                if index >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[index]
                index += 1
            flags[name] = value
        else:
            raise UsageError(f"flag provided but not defined: -{name}")
    return words, flags


def admin_user_create(argv: list[str], *, user_exists: Callable[[str], bool], has_users: bool,
                      create: Callable[..., Any], create_token: Callable[[str, str, list[str]], str]) -> CliResult:
    """Run `gitea [global flags] admin user create ...` against the stand-in's state."""
    try:
        words, flags = parse(argv)
    except UsageError as error:
        return CliResult(1, f"Incorrect Usage: {error}\n")
    if words != COMMAND:
        return CliResult(1, f"the Gitea stand-in runs only `gitea admin user create`, not `gitea {' '.join(words)}`\n")

    def fail(message: str) -> CliResult:
        # cmd/main.go prints a command's error this way and exits 1.
        return CliResult(1, f"Command error: {message}\n")

    if "username" in flags:
        username = flags["username"]
    elif "name" in flags:
        username = flags["name"]
    else:
        return fail("must set either username or name flag")
    if "email" not in flags:
        return fail("email is not set")
    if "password" in flags and flags.get("random-password") == "true":
        return fail("cannot set both -random-password and -password flags")
    if "password" not in flags:
        return fail("must set either password or random-password flag")
    if "@" not in flags["email"]:
        return fail(f"CreateUser: e-mail invalid [email: {flags['email']}]")
    if user_exists(username):
        return fail(f"CreateUser: user already exists [name: {username}]")
    # --must-change-password defaults to true, except for the very first user of the instance.
    must_change = flags["must-change-password"] == "true" if "must-change-password" in flags else has_users
    create(username, flags["password"], flags["email"], admin=flags.get("admin") == "true",
           must_change_password=must_change)
    output = ""
    if flags.get("access-token") == "true":
        scopes = [s.strip() for s in flags.get("access-token-scopes", "all").split(",") if s.strip()]
        token = create_token(username, flags.get("access-token-name", "gitea-admin"), scopes)
        output += f"Access token was successfully created... {token}\n"
    output += f"New user '{username}' has been successfully created!\n"
    return CliResult(0, output)
