"""The exceptions apphub raises, one tree for every part.

ApphubError
├── DataDirError                 the data folder is missing, not initialised, or unusable
│   └── StorageFull              the disk holding the data folder has no room for a write
├── IniParseError (ValueError)   an INI file does not parse (file, line)
├── SchemaError (ValueError)     a schema file is invalid (file, field)
├── ValidationFailed (ValueError)
│                                proposed settings break the schema; carries every FieldError at once
├── NotFound (LookupError)
│   ├── SectionNotFound          no such section in the file
│   └── KeyNotFound              no such key in the section
├── VersionConflict              an If-Match version is not the current one
├── LockTimeout                  another writer held the file lock for too long
├── SecretError                  a stored secret cannot be decrypted (names section and key)
├── KeyNameError (ValueError) an API key name that is malformed, reserved or taken
├── SyncError                    the sync engine could not bring a service to the wanted version
│   ├── ManifestError (ValueError)
│   │                            services.yaml is invalid (service, file, field)
│   ├── RenderError (ValueError) a file cannot be rendered, or its render is not valid (service, file)
│   ├── ReloadError              a reload action failed (service, strategy, cause)
│   ├── HealthCheckFailed        a service did not come back healthy in time (service, probe)
│   └── BackendUnavailable       supervisord or the container engine cannot be reached
├── ServiceError                 a product's API (Gitea, Portainer, NPM, Cockpit) did not do what was asked
│   ├── ServiceUnreachable       it cannot be reached, timed out or answered 5xx (worth retrying)
│   ├── ServiceRefused           it answered and refused (4xx: wrong credentials, one of its own rules)
│   └── NeedsOperator            only a person can do the next step (the message says what to run)
└── AuthError
    ├── Unauthenticated          no API key, or one that is not known
    └── Forbidden                the key's role is too weak for the action

Third-party exceptions (sqlite3, cryptography, OSError from the file system) are translated into
these where they are raised, so an HTTP handler or a CLI command only ever sees this tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ApphubError(Exception):
    """Base of every error apphub raises on purpose."""


class DataDirError(ApphubError):
    """The data folder is missing, not initialised, or cannot be used."""


class StorageFull(DataDirError):
    """The disk (or quota) holding the data folder has no room left: the write was not made."""


class IniParseError(ApphubError, ValueError):
    """An INI file does not parse; names the file and the line, and quotes the line (`excerpt`).

    `public` leaves the quote out: the API says where the problem is, never what the line holds
    (a broken line can be a password without its `=`).
    """

    def __init__(self, source: str, line: int | None, message: str, excerpt: str | None = None) -> None:
        self.source = source
        self.line = line
        self.message = message
        self.excerpt = excerpt
        where = f"{source}:{line}" if line is not None else source
        self.public = f"{where}: {message}"
        super().__init__(self.public + (f": {excerpt!r}" if excerpt is not None else ""))


class SchemaError(ApphubError, ValueError):
    """A schema file is invalid; names the file and the field."""


@dataclass(frozen=True)
class FieldError:
    """One broken rule: which file, section and key, the (masked) value, the rule and why."""

    section: str
    key: str | None
    rule: str
    message: str
    value: str | None = None
    file: str = "config.ini"
    line: int | None = None
    # "error" refuses a write; "warning" (a rule of rules/ declared so) is accepted and reported
    severity: str = "error"

    def location(self) -> str:
        where = f"[{self.section}]" + (f" {self.key}" if self.key is not None else "")
        prefix = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        return prefix + where

    def __str__(self) -> str:
        shown = f" = {self.value!r}" if self.value is not None else ""
        warning = "warning: " if self.severity == "warning" else ""
        return f"{self.location()}{shown}: {warning}{self.message} (rule: {self.rule})"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "section": self.section,
            "key": self.key,
            "value": self.value,
            "rule": self.rule,
            "message": self.message,
            "line": self.line,
            "severity": self.severity,
        }


@dataclass
class ValidationFailed(ApphubError, ValueError):
    """Proposed settings break the schema. Carries every problem found, not just the first."""

    errors: list[FieldError] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.errors)
        lines = [f"{count} problem{'s' if count != 1 else ''} in the proposed settings:"]
        lines += [f"  {error}" for error in self.errors]
        return "\n".join(lines)


class NotFound(ApphubError, LookupError):
    """Something that was asked for does not exist."""


class SectionNotFound(NotFound):
    """No such section in the file."""

    def __init__(self, section: str, file: str = "config.ini") -> None:
        self.section = section
        self.file = file
        super().__init__(f"Section [{section}] does not exist in {file}")


class KeyNotFound(NotFound):
    """No such key in the section."""

    def __init__(self, section: str, key: str, file: str = "config.ini") -> None:
        self.section = section
        self.key = key
        self.file = file
        super().__init__(f"Key '{key}' does not exist in section [{section}] of {file}")


class VersionNotFound(NotFound):
    """No version of the history matches the id or version asked for."""


class AmbiguousVersion(ApphubError, ValueError):
    """A prefix matches more than one version of the history."""


class HistoryError(ApphubError):
    """The history repository cannot be read or written (damaged, missing, a full disk)."""


class VersionConflict(ApphubError):
    """The version a writer based its change on (If-Match) is no longer the current one."""

    def __init__(self, expected: str, current: str, file: str = "config.ini") -> None:
        self.expected = expected
        self.current = current
        super().__init__(
            f"{file} changed since version {expected}; the current version is {current}. "
            "Read it again and retry."
        )


class LockTimeout(ApphubError):
    """Another writer held the lock on a file for longer than we wait."""


class SecretError(ApphubError):
    """A stored secret cannot be decrypted: the key file is missing, wrong, or the value is damaged."""


class KeyNameError(ApphubError, ValueError):
    """An API key name is malformed, reserved, or taken."""


class SyncError(ApphubError):
    """The sync engine could not bring a service to the wanted version."""


class ManifestError(SyncError, ValueError):
    """services.yaml is invalid; names the service, the file and the field."""


class RenderError(SyncError, ValueError):
    """A file cannot be rendered, or what it renders does not parse; names the service and file."""


class ReloadError(SyncError):
    """A reload action failed; names the service, the strategy and the cause."""


class HealthCheckFailed(SyncError):
    """A service did not come back healthy in time; names the service and the probe."""


class Interrupted(SyncError):
    """apphub is stopping: a health gate was cut short, so its result is unknown (not a failure)."""


class BackendUnavailable(SyncError):
    """supervisord or the container engine cannot be reached (a retry later may succeed)."""


class ServiceError(ApphubError):
    """A product's API did not do what apphub asked; names the product, the call and the cause."""


class ServiceUnreachable(ServiceError):
    """The product cannot be reached, timed out, or answered 5xx: a later attempt may work."""


class ServiceRefused(ServiceError):
    """The product answered and refused (4xx); `status` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NeedsOperator(ServiceError):
    """A step apphub cannot do from outside the product; the message says what to run."""


class AuthError(ApphubError):
    """Base of authentication and authorisation failures."""


class Unauthenticated(AuthError):
    """No API key was sent, or the key is not known."""


class Forbidden(AuthError):
    """The API key is known, but its role is too weak for the action."""
