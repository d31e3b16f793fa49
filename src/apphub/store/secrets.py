"""Secrets at rest: `enc:v1:` + a Fernet token in the INI file, keys in a 0600 file of their own.

The key file holds one Fernet key per line, newest first. Encryption always uses the first;
decryption tries each (MultiFernet), so rotating means adding a key on top and re-encrypting,
while versions encrypted with an older key (in history) can still be read.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from apphub.errors import SecretError
from apphub.store.atomic import atomic_write, exclusive_lock

PREFIX = "enc:v1:"
MASK = "********"


class Secret:
    """A decrypted value whose repr and str are masked, so a log line or traceback cannot leak it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def is_encrypted(stored: str) -> bool:
    return stored.startswith(PREFIX)


def mask(value: str) -> str:
    """What a response shows for a secret: the mask, or "" for an empty one (nothing to hide)."""
    return MASK if value else ""


class SecretBox:
    """Encrypts and decrypts the values of secret keys with the keys of one key file."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._identity: tuple[int, int, int] | None = None
        self._load()

    def _load(self) -> None:
        self._identity = _identity(self.key_file)
        keys = _read_keys(self.key_file)
        self._primary = Fernet(keys[0])
        self._all = MultiFernet([Fernet(key) for key in keys])
        self.key_count = len(keys)

    def _refresh(self) -> bool:
        """Reload the keys if another process rotated them (`apphub secrets rotate`); True if it did."""
        if _identity(self.key_file) == self._identity:
            return False
        self._load()
        return True

    @staticmethod
    def create_key_file(key_file: Path) -> None:
        """Write a new key file, readable by its owner only; refuses to overwrite one."""
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def add_primary_key(key_file: Path) -> None:
        """Put a new key first in the key file (rotation); older keys stay for decryption.

        Under a lock, so that two rotations at once cannot drop the key the other one added.
        """
        with exclusive_lock(key_file.with_name(key_file.name + ".lock"), what=str(key_file)):
            keys = _read_keys(key_file)
            atomic_write(key_file, b"\n".join([Fernet.generate_key(), *keys]) + b"\n", mode=0o600)

    def encrypt(self, plaintext: str) -> str:
        self._refresh()
        return PREFIX + self._primary.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, stored: str, where: str) -> Secret:
        """The plaintext of a stored value; a value without the prefix is plaintext typed by hand."""
        if not is_encrypted(stored):
            return Secret(stored)
        token = stored[len(PREFIX) :].encode("ascii", errors="replace")
        try:
            return Secret(self._all.decrypt(token).decode("utf-8"))
        except InvalidToken:
            if not self._refresh():
                raise SecretError(
                    f"{where}: the stored secret cannot be decrypted with the keys in {self.key_file} "
                    "(wrong key file, or the value was damaged)"
                ) from None
        try:
            return Secret(self._all.decrypt(token).decode("utf-8"))
        except InvalidToken as exc:
            raise SecretError(
                f"{where}: the stored secret cannot be decrypted with the keys in {self.key_file} "
                "(wrong key file, or the value was damaged)"
            ) from exc

    def needs_rotation(self, stored: str) -> bool:
        """Whether a stored value is encrypted with a key other than the primary one."""
        if not is_encrypted(stored):
            return True
        try:
            self._primary.decrypt(stored[len(PREFIX) :].encode("ascii", errors="replace"))
        except InvalidToken:
            return True
        return False


def _identity(key_file: Path) -> tuple[int, int, int] | None:
    try:
        status = key_file.stat()
    except OSError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


def _read_keys(key_file: Path) -> list[bytes]:
    try:
        lines = key_file.read_bytes().split()
    except FileNotFoundError as exc:
        raise SecretError(f"the encryption key file {key_file} does not exist") from exc
    except OSError as exc:
        raise SecretError(f"the encryption key file {key_file} cannot be read: {exc}") from exc
    if not lines:
        raise SecretError(f"the encryption key file {key_file} is empty")
    for number, line in enumerate(lines, start=1):
        try:
            Fernet(line)
        except ValueError as exc:
            raise SecretError(f"{key_file}: key {number} is not a Fernet key") from exc
    return lines
