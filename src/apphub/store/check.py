"""Checking a whole INI file against its schema, every problem at once: what `apphub check`
lists, and what the sync engine refuses a hand edit for.
"""

from __future__ import annotations

from apphub.errors import FieldError, SecretError
from apphub.store.inidoc import IniDocument
from apphub.store.schema import FileSchema
from apphub.store.secrets import MASK, SecretBox, is_encrypted
from apphub.store.validate import check_file, shown_value


def file_problems(document: IniDocument, schema: FileSchema, box: SecretBox | None, name: str, *,
                  plaintext_secrets: bool = True) -> list[str]:
    """Every problem of `document`, one line each (see `located_problems`)."""
    return [text for _, text in located_problems(document, schema, box, name, plaintext_secrets=plaintext_secrets)]


def located_problems(document: IniDocument, schema: FileSchema, box: SecretBox | None, name: str, *,
                     plaintext_secrets: bool = True) -> list[tuple[tuple[str, str | None], str]]:
    """Every problem of `document`, one line each, naming file, line, section and key.

    A secret that cannot be decrypted is one problem (and not also "missing"); a secret stored
    in plaintext is one too, unless `plaintext_secrets` is False (the engine encrypts it instead).
    The value of a secret, or of a key the schema does not know, is never shown.
    """
    return [((error.section, error.key), error.message if error.rule == UNREADABLE else str(error))
            for error in field_errors(document, schema, box, name, plaintext_secrets=plaintext_secrets)]


UNREADABLE = "decrypt"  # the rule of a secret that cannot be decrypted (its message names the place)


def field_errors(document: IniDocument, schema: FileSchema, box: SecretBox | None, name: str, *,
                 plaintext_secrets: bool = True) -> list[FieldError]:
    """Every problem of `document` as FieldErrors (see located_problems): what refuses a whole
    file, a rollback's target version say, with every reason."""
    problems: list[FieldError] = []
    values: dict[str, dict[str, str]] = {}
    unreadable: set[tuple[str, str]] = set()  # already reported; present, but not checked further
    for section in document.sections():
        values[section] = {}
        for key, stored in document.items(section):
            values[section][key] = stored
            if not (schema.is_secret(section, key) or is_encrypted(stored)):
                continue
            if box is None:
                unreadable.add((section, key))
                continue
            line = document.line_of(section, key)
            try:
                values[section][key] = box.decrypt(stored, f"{name}:{line}: [{section}] {key}").reveal()
            except SecretError as exc:
                problems.append(FieldError(section, key, UNREADABLE, str(exc), MASK, name, line))
                unreadable.add((section, key))
                continue
            if plaintext_secrets and stored and not is_encrypted(stored):
                problems.append(FieldError(section, key, "encrypted", "is a secret stored in plaintext; `apphub "
                                           "serve` or `apphub init` encrypts it", MASK, name, line))

    def shown(section: str, key: str | None, value: object) -> str | None:
        return shown_value(schema, section, key, value)

    errors = check_file(schema, values, file=name, line_of=document.line_of, mask=shown)
    return problems + [error for error in errors if (error.section, error.key) not in unreadable]
