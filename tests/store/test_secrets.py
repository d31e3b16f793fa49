"""Secrets at rest: encryption, masking, key files, and rotation across processes."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from apphub.errors import SecretError
from apphub.store.secrets import MASK, PREFIX, Secret, SecretBox, is_encrypted, mask

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / ".apphub" / "secret.key"
    SecretBox.create_key_file(path)
    return path


@pytest.fixture
def box(key_file: Path) -> SecretBox:
    return SecretBox(key_file)


# -- encryption --------------------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", ["hJUGWrlDgqmGglr0", "R@9)qn)t9hJW", "pässwörd ☕ 100%", "x" * 4096, ""])
def test_encrypt_then_decrypt_gives_the_plaintext_back(box: SecretBox, plaintext: str) -> None:
    stored = box.encrypt(plaintext)

    assert stored.startswith(PREFIX)
    assert is_encrypted(stored)
    assert "\n" not in stored
    assert " " not in stored
    if plaintext:
        assert plaintext not in stored
    assert box.decrypt(stored, "config.ini [gitea] user_pwd").reveal() == plaintext


def test_the_same_plaintext_encrypts_differently_every_time(box: SecretBox) -> None:
    first, second = box.encrypt("same"), box.encrypt("same")

    assert first != second
    assert box.decrypt(first, "x") == box.decrypt(second, "x")


def test_a_value_without_the_prefix_is_plaintext_typed_by_hand(box: SecretBox) -> None:
    secret = box.decrypt("typed-by-hand", "config.ini [gitea] user_pwd")

    assert secret.reveal() == "typed-by-hand"
    assert not is_encrypted("typed-by-hand")


# -- masking -----------------------------------------------------------------------------------


def test_a_secret_never_shows_its_value_in_repr_str_or_formatting() -> None:
    secret = Secret("hunter2-plaintext")

    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        "%s / %r" % (secret, secret),  # noqa: UP031 - the old formatting must mask too
        "{} {!r}".format(secret, secret),  # noqa: UP032
        repr([secret]),
        str({"user_pwd": secret}),
        repr((secret,)),
        str(ValueError(secret)),
        str(ValueError(f"login failed with {secret}")),
    ]

    for text in shown:
        assert "hunter2" not in text, text
        assert MASK in text, text
    assert repr(secret) == "Secret('********')"
    assert str(secret) == MASK


def test_a_secret_inside_a_dataclass_repr_or_a_log_record_stays_masked(caplog: pytest.LogCaptureFixture) -> None:
    @dataclass
    class Login:
        user: str
        password: Secret

    login = Login("admin", Secret("hunter2-plaintext"))
    with caplog.at_level(logging.INFO, logger="apphub.test"):
        logging.getLogger("apphub.test").info("logging in with %s as %r", login.password, login)

    assert "hunter2" not in repr(login)
    assert "hunter2" not in caplog.text
    assert "logging in with ********" in caplog.text


def test_a_secret_in_an_exception_traceback_stays_masked() -> None:
    secret = Secret("hunter2-plaintext")
    with pytest.raises(RuntimeError) as caught:
        raise RuntimeError("cannot log in", secret)

    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in caught.exconly()


def test_secrets_compare_by_value_and_are_false_when_empty() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"  # a plain string never equals a Secret
    assert not Secret("")
    assert Secret("x")
    assert len({Secret("a"), Secret("a")}) == 1


def test_mask_hides_a_value_and_shows_an_empty_one_as_empty() -> None:
    assert mask("anything") == MASK
    assert mask("") == ""


# -- the key file ------------------------------------------------------------------------------


def test_the_key_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secret.key"
    old_umask = os.umask(0)
    try:
        SecretBox.create_key_file(path)
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes().split()) == 1


def test_an_existing_key_file_is_never_overwritten(key_file: Path, box: SecretBox) -> None:
    before = key_file.read_bytes()
    stored = box.encrypt("keep me")

    with pytest.raises(FileExistsError):
        SecretBox.create_key_file(key_file)

    assert key_file.read_bytes() == before
    assert SecretBox(key_file).decrypt(stored, "x").reveal() == "keep me"


def test_a_wrong_key_file_gives_a_secret_error_naming_section_and_key(tmp_path: Path, box: SecretBox) -> None:
    stored = box.encrypt("hunter2-plaintext")
    other_file = tmp_path / "other.key"
    SecretBox.create_key_file(other_file)

    with pytest.raises(SecretError) as caught:
        SecretBox(other_file).decrypt(stored, "config.ini [gitea] user_pwd")

    message = str(caught.value)
    assert "[gitea] user_pwd" in message
    assert str(other_file) in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "damaged",
    [PREFIX + "not-a-token", PREFIX, PREFIX + "gAAAAAB\u00e9\u00e9", "enc:v1:" + "A" * 120],
)
def test_a_damaged_value_gives_a_secret_error(box: SecretBox, damaged: str) -> None:
    with pytest.raises(SecretError, match=r"\[portainer\] user_pwd"):
        box.decrypt(damaged, "config.ini [portainer] user_pwd")


def test_a_missing_empty_or_garbled_key_file_gives_a_secret_error(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="does not exist"):
        SecretBox(tmp_path / "missing.key")
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    with pytest.raises(SecretError, match="is empty"):
        SecretBox(empty)
    garbled = tmp_path / "garbled.key"
    garbled.write_bytes(b"this-is-not-a-fernet-key\n")
    with pytest.raises(SecretError, match="key 1 is not a Fernet key"):
        SecretBox(garbled)


# -- rotation ----------------------------------------------------------------------------------


def test_rotation_puts_a_new_key_first_and_old_values_stay_readable(key_file: Path, box: SecretBox) -> None:
    old_key = key_file.read_bytes().split()[0]
    old_stored = box.encrypt("encrypted before rotation")

    SecretBox.add_primary_key(key_file)

    keys = key_file.read_bytes().split()
    assert len(keys) == 2
    assert keys[1] == old_key
    assert keys[0] != old_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not list(key_file.parent.glob("*.new"))
    rotated = SecretBox(key_file)
    assert rotated.key_count == 2
    assert rotated.decrypt(old_stored, "x").reveal() == "encrypted before rotation"
    assert rotated.needs_rotation(old_stored)
    new_stored = rotated.encrypt("encrypted after rotation")
    assert not rotated.needs_rotation(new_stored)
    assert rotated.needs_rotation("plaintext typed by hand")


def test_another_process_picks_up_the_rotated_key_file(key_file: Path) -> None:
    server = SecretBox(key_file)  # a long-running process that loaded the keys before the rotation
    before = server.encrypt("written before")

    result = subprocess.run(
        [sys.executable, "-c", "import sys, pathlib; from apphub.store.secrets import SecretBox; "
         "SecretBox.add_primary_key(pathlib.Path(sys.argv[1])); box = SecretBox(pathlib.Path(sys.argv[1])); "
         "print(box.encrypt('written by the rotating process'))", str(key_file)],
        capture_output=True, text=True, check=True, timeout=30,
    )
    from_other = result.stdout.strip()

    # The server decrypts what the other process encrypted with the new key, and encrypts with it too.
    assert server.decrypt(from_other, "config.ini [gitea] user_pwd").reveal() == "written by the rotating process"
    after = server.encrypt("written after")
    fresh = SecretBox(key_file)
    assert not fresh.needs_rotation(after)
    assert fresh.needs_rotation(before)
    assert fresh.decrypt(before, "x").reveal() == "written before"
    assert server.key_count == 2


def test_concurrent_rotations_lose_no_key(key_file: Path, tmp_path: Path) -> None:
    """Two `apphub secrets rotate` at once: every key any of them added must stay in the file."""
    script = textwrap.dedent(
        """
        import sys, pathlib
        from apphub.store.secrets import SecretBox
        print("ready", flush=True)
        sys.stdin.readline()
        SecretBox.add_primary_key(pathlib.Path(sys.argv[1]))
        """
    )
    count = 6
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(key_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(count)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:  # release them together
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = [process.communicate(timeout=30) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    failures = [err.strip().splitlines()[-1] for (_, err), p in zip(outcomes, processes, strict=True) if p.returncode]
    assert (len(key_file.read_bytes().split()), failures) == (1 + count, [])
