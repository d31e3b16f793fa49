"""First start: create a data folder with Websoft9's layout, strong credentials, and the keys.

Every step only creates what is missing, so a second start changes nothing.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from apphub.audit.log import Actor, AuditLog
from apphub.db import Database
from apphub.envvars.store import SCHEMA as ENV_SCHEMA
from apphub.envvars.store import ensure_file
from apphub.errors import DataDirError, IniParseError
from apphub.keys import KeyStore
from apphub.paths import DataDir
from apphub.store.atomic import atomic_write
from apphub.store.inistore import IniStore
from apphub.store.schema import FileSchema, KeySpec, load_schema
from apphub.store.secrets import PREFIX, SecretBox
from apphub.store.snapshot import recordable, version_of

INIT_ACTOR = Actor("init", "init")

_SCHEMA_README = """\
Schema files for this data folder.

Every *.yaml file here is loaded after apphub's built-in schema (Websoft9's sections), in name
order. A file can add sections, add or replace keys, and allow extra sections or keys. Example:

config:
  sections:
    web:
      description: The demo web service
      keys:
        port: {type: port, required: true, default: 8081, apply: restart}
        title: {type: string, max_length: 80, apply: reload}
        admin_password: {type: string, secret: true, min_length: 12}

Types: string, int, bool, port, url, email, hostname, path, enum (with choices), list (comma-separated).
Rules: secret, required, default, min, max, min_length, max_length, pattern, choices, description,
apply (hot | reload | restart), generate (password | token_hex, for a first start).
Run `apphub check` after editing.
"""


@dataclass
class InitReport:
    """What a start created; empty lists mean the folder was already complete."""

    created: list[str] = field(default_factory=list)
    admin_key_file: Path | None = None
    encrypted_secrets: int = 0
    completed_keys: int = 0  # required keys an adopted file lacked, added from their defaults
    problems: list[str] = field(default_factory=list)  # what could not be done, for the operator to fix


def initialise(data: DataDir) -> InitReport:
    """Create whatever the data folder lacks; never overwrite what is there."""
    report = InitReport()
    _make_folder(data.root, 0o755, report)
    _make_folder(data.state_dir, 0o700, report)
    _make_folder(data.lock_dir, 0o700, report)
    if not data.schema_dir.exists():
        _make_folder(data.schema_dir, 0o755, report)
        (data.schema_dir / "README.txt").write_text(_SCHEMA_README, encoding="utf-8")

    if not data.secret_key.exists():
        for ini in (data.config_ini, data.system_ini):
            if ini.exists() and PREFIX in ini.read_text(encoding="utf-8", errors="replace"):
                raise DataDirError(
                    f"{ini} holds encrypted secrets but the key file {data.secret_key} is missing; "
                    "restore the key file (a new key could not decrypt them)"
                )
        SecretBox.create_key_file(data.secret_key)
        report.created.append(str(data.secret_key))
    box = SecretBox(data.secret_key)

    schema = load_schema(data.schema_dir)
    created: set[Path] = set()
    for path, file_schema in ((data.config_ini, schema.config), (data.system_ini, schema.system)):
        if not path.exists():
            atomic_write(path, render_default_ini(file_schema, box).encode("utf-8"), mode=0o600)
            report.created.append(str(path))
            created.add(path)

    if not data.env_ini.exists():
        ensure_file(data.env_ini)
        report.created.append(str(data.env_ini))
        created.add(data.env_ini)

    database = Database(data.database)
    try:
        if not data.database.exists() or database.query("PRAGMA user_version")[0][0] == 0:
            report.created.append(str(data.database))
        database.migrate()
        keys = KeyStore(database)
        if not keys.has_admin():
            report.admin_key_file = _create_admin_key(keys, data.admin_key)
        audit = AuditLog(database)
        # The stores first: they tell the audit log where their staged files are (how it knows
        # whether the last write, still pending, was made).
        stores = [IniStore(path, data.lock_for(path), file_schema, box, audit)
                  for path, file_schema in ((data.config_ini, schema.config), (data.system_ini, schema.system),
                                            (data.env_ini, ENV_SCHEMA))]
        for store in stores:
            path = store.path
            if audit.last_version(path.name) is None:  # the first version the audit log knows
                action, message = (("settings.init", f"created {path.name}") if path in created
                                   else ("settings.adopt", f"adopted the existing {path.name}"))
                audit.record(INIT_ACTOR, action, file=path.name, version_after=version_of(path.read_bytes()),
                             message=message, content=_recordable(store))
        for store in stores:
            try:
                # encrypted first: any write also encrypts what it finds in plaintext (IniStore._write)
                report.encrypted_secrets += len(store.reencrypt_secrets(INIT_ACTOR, only_plaintext=True).changes)
                report.completed_keys += _complete_required_keys(store)
            except IniParseError as exc:
                # Start anyway: the API then says what is wrong, and the edit is never overwritten.
                report.problems.append(f"{exc.public}; fix it (`apphub check` shows the line)")
    finally:
        database.close()
    return report


def _recordable(store: IniStore) -> bytes | None:
    """The file's bytes for the history, if it parses and holds no plaintext secret (else the
    version that encrypts them, or the next one, is the first the history keeps)."""
    try:
        return recordable(store.snapshot())
    except IniParseError:
        return None


def _complete_required_keys(store: IniStore) -> int:
    """Add the required keys an adopted file lacks (an older Websoft9 release's), from their defaults.

    Without them every write to their section would fail validation, and Websoft9's setconfig
    cannot add keys. Websoft9's own migration.sh merges new template keys the same way.
    """
    document = store.snapshot().document
    missing: dict[str, dict[str, object]] = {}
    for section, spec in store.schema.sections.items():
        for key, key_spec in spec.keys.items():
            value = default_text(key_spec)
            if key_spec.required and value and not document.has_key(section, key):
                missing.setdefault(section, {})[key] = value
    if not missing:
        return 0
    return len(store.update(missing, INIT_ACTOR, action="settings.complete").changes)


def render_default_ini(schema: FileSchema, box: SecretBox) -> str:
    """A new INI file with every section and key of the schema, described, with fresh credentials."""
    blocks = []
    for section, spec in schema.sections.items():
        lines = [f"# {spec.description}"] if spec.description else []
        lines.append(f"[{section}]")
        for key, key_spec in spec.keys.items():
            value = default_text(key_spec)
            if key_spec.secret and value:
                value = box.encrypt(value)
            lines.append(f"{key} = {value}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def default_text(spec: KeySpec) -> str:
    """The INI text a key starts with: its default, or a freshly generated credential."""
    if spec.generate == "password":
        return secrets.token_urlsafe(18)
    if spec.generate == "token_hex":
        return secrets.token_hex(32)
    if spec.default is None:
        return ""
    if isinstance(spec.default, bool):
        return "true" if spec.default else "false"
    if isinstance(spec.default, list):
        return ",".join(spec.default)
    return str(spec.default)


def _make_folder(path: Path, mode: int, report: InitReport) -> None:
    if path.is_dir():
        return
    if path.exists():
        raise DataDirError(f"{path} exists and is not a folder")
    path.mkdir(parents=True, mode=mode)
    os.chmod(path, mode)  # mkdir's mode is filtered by the umask
    report.created.append(str(path))


def _create_admin_key(keys: KeyStore, key_file: Path) -> Path:
    key = keys.create("admin", "admin")
    atomic_write(key_file, (key + "\n").encode("ascii"), mode=0o600)
    return key_file
