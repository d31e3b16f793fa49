"""`apphub config show|get|set` and `apphub check`."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import click

from apphub.cli.context import CLI_ACTOR, data_of, open_core
from apphub.environments.judging import relocated
from apphub.environments.overlays import (
    ACTIVE,
    BASE,
    EnvironmentNotFound,
    check_name,
    file_name,
    merged,
    relaxed,
)
from apphub.envvars.check import env_problems
from apphub.envvars.store import SCHEMA as ENV_SCHEMA
from apphub.errors import ApphubError, FieldError, IniParseError, SchemaError, SecretError, ValidationFailed
from apphub.paths import DataDir
from apphub.rules.base import CONFIG, SYSTEM
from apphub.rules.book import standard_rules
from apphub.store.check import file_problems
from apphub.store.inidoc import IniDocument
from apphub.store.schema import FileSchema, Schema, load_schema
from apphub.store.secrets import SecretBox, mask
from apphub.store.snapshot import Snapshot
from apphub.store.substitution import explain
from apphub.sync.manifest import load_manifest
from apphub.sync.settings import SyncSettings

FILES = click.Choice(["config", "system"])


@click.group()
def config() -> None:
    """Read and change settings (validated, locked and audited, like the API)."""


@config.command("show")
@click.argument("section", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of INI text.")
@click.option("--reveal", is_flag=True, help="Print secrets in plaintext (audited).")
@click.option("--file", "file_name", type=FILES, default="config", show_default=True)
@click.pass_context
def show(ctx: click.Context, section: str | None, as_json: bool, reveal: bool, file_name: str) -> None:
    """Print all sections, or one, with secrets masked unless --reveal."""
    with open_core(ctx) as core:
        store = core.config if file_name == "config" else core.system
        snapshot = store.snapshot()
        sections = [section] if section else snapshot.sections()
        values = {name: snapshot.public_section(name, reveal=reveal) for name in sections}
        if reveal:
            core.audit.record_reveal(CLI_ACTOR, store.name, snapshot.version,
                                     [(s, k) for s, k in snapshot.secret_keys() if s in sections])
    if as_json:
        click.echo(json.dumps(values[section] if section else values, indent=2))
        return
    blocks = []
    for name, keys in values.items():
        lines = [f"[{name}]"] + [f"{key} = {_text(value)}" for key, value in keys.items()]
        blocks.append("\n".join(lines))
    click.echo("\n\n".join(blocks))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


@config.command("get")
@click.argument("section")
@click.argument("key")
@click.option("--file", "file_name", type=FILES, default="config", show_default=True)
@click.pass_context
def get(ctx: click.Context, section: str, key: str, file_name: str) -> None:
    """Print one value; a secret is printed decrypted (for scripts run by the operator)."""
    with open_core(ctx) as core:
        store = core.config if file_name == "config" else core.system
        snapshot = store.snapshot()
        value = snapshot.section_plaintext_value(section, key)
        core.audit.record_reveal(CLI_ACTOR, store.name, snapshot.version,
                                 [(s, k) for s, k in snapshot.secret_keys() if (s, k) == (section, key)])
    click.echo(value)


@config.command("set")
@click.argument("section")
@click.argument("key")
@click.argument("value")
@click.option("--message", help="Why (kept in the audit log and as the history's commit message).")
@click.pass_context
def set_(ctx: click.Context, section: str, key: str, value: str, message: str | None) -> None:
    """Set one key of config.ini (adding it where the schema allows), validated and audited."""
    with open_core(ctx) as core:
        result = core.config.update({section: {key: value}}, CLI_ACTOR, message=message)
        secret = core.config.schema.is_secret(section, key)
    shown = mask(value) if secret else value
    if result.changed:
        click.echo(f"[{section}] {key} = {shown}  (version {result.snapshot.version})")
    else:
        click.echo(f"[{section}] {key} unchanged  (version {result.snapshot.version})")
    for warning in result.warnings:
        click.echo(str(warning), err=True)


@config.command("explain")
@click.argument("section")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as the API's .../explain answers).")
@click.option("--environment", help="As this environment sees it (base: config.ini alone); default: the one running.")
@click.pass_context
def explain_(ctx: click.Context, section: str, key: str, as_json: bool, environment: str | None) -> None:
    """Where a key's effective value comes from: as written, after ${...} substitution, the layer
    it came from, the keys and environment variables it was made of (secrets masked)."""
    with open_core(ctx) as core:
        try:
            name = environment or core.environments.active()
            if name is not None and name != BASE:
                core.environments.store(name)  # refuses an unknown one
            answer = explain(core.config.snapshot(), section, key, os.environ, core.environments.overlay(name))
        except KeyError:
            raise click.ClickException(f"config.ini has no key '{key}' in [{section}], and the schema gives no "
                                       "default") from None
    if as_json:
        click.echo(json.dumps(answer.as_dict(), indent=2))
        return
    where = f"{answer.origin}:{answer.line}" if answer.line else answer.origin
    click.echo(f"[{section}] {key} = {answer.value if answer.error is None else '(unresolved)'}")
    click.echo(f"  written:    {answer.raw}  ({where})")
    for ref in answer.references:
        secret = ", secret" if ref.secret else ""
        click.echo(f"  refers to:  [{ref.section}] {ref.key}  ({ref.origin}{secret})")
    for name in answer.env:
        click.echo(f"  env:        {name}")
    if answer.error:
        click.echo(f"  error:      {answer.error}", err=True)
        raise click.exceptions.Exit(1)


@click.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate config.ini, system.ini and every environment's overlay (config.NAME.ini) against the
    schema (and env.ini's names), offline; list every problem.

    Exit status 1 when there is any problem (each printed as FILE:LINE: [section] key = value: why);
    the rules judge config.ini as the services get it, with the active environment's overlay over
    it; their warnings are printed too, and leave the status 0.
    """
    data = data_of(ctx)
    problems: list[str] = []
    try:
        schema = load_schema(data.schema_dir)
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        box: SecretBox | None = SecretBox(data.secret_key)
    except SecretError as exc:
        box = None
        problems.append(str(exc))
    config_file = _check_one(data.config_ini, schema.config, box)
    system_file = _check_one(data.system_ini, schema.system, box)
    overlays, active, active_problems = _check_overlays(data, schema.config, box, system_file.document)
    checked = [config_file, system_file, *overlays]
    for one in checked:
        problems += one.problems
    problems += active_problems
    counts = [one.summary for one in checked if one.summary]
    if box is not None and data.env_ini.exists():
        found, summary = _check_env(data.env_ini, box)
        problems += found
        if summary:
            counts.append(summary)
    problems += _manifest_problems(data, box, schema)
    warnings: list[str] = []
    if not problems and box is not None:  # the rules judge values the schema accepted
        for finding in _rule_findings(data, schema, box, config_file, system_file, active):
            (problems if finding.severity == "error" else warnings).append(str(finding))
    for problem in problems + warnings:
        click.echo(problem, err=True)
    if problems:
        raise click.exceptions.Exit(1)
    for summary in counts:
        click.echo(summary)


class Checked(NamedTuple):
    """One INI file as `check` read it: its problems, the line printed when there are none, and
    its bytes and document for the rules (None: it could not be read or parsed)."""

    name: str
    problems: list[str]
    summary: str | None = None
    raw: bytes = b""
    document: IniDocument | None = None


def _rule_findings(data: DataDir, schema: Schema, box: SecretBox, config_file: Checked, system_file: Checked,
                   active: Checked | None) -> list[FieldError]:
    """The rules beyond the schema (ports, credentials, the schema's cross-key rules), every key,
    on what the services get: config.ini with the active overlay over it. A finding about a value
    the overlay sets names the overlay's file and line (environments/judging.py `relocated`)."""
    overlay = _snapshot(active, relaxed(schema.config), box) if active is not None else None
    files = {CONFIG: merged(_snapshot(config_file, schema.config, box), overlay),
             SYSTEM: _snapshot(system_file, schema.system, box)}
    return relocated(standard_rules(data, lambda: files[SYSTEM], lambda: files[CONFIG]).judge(files), overlay)


def _snapshot(checked: Checked, schema: FileSchema, box: SecretBox) -> Snapshot:
    # Only called once every file parsed (the rules run on no problem at all).
    assert checked.document is not None, f"{checked.name} was not parsed"
    return Snapshot(checked.name, checked.raw, checked.document, schema, box)


def _check_overlays(data: DataDir, config_schema: FileSchema, box: SecretBox | None,
                    system: IniDocument | None) -> tuple[list[Checked], Checked | None, list[str]]:
    """Every environment's overlay, under config.ini's schema as an overlay has it (`relaxed`:
    nothing required); the active one, for the rules (None: config.ini alone); and what is wrong
    with system.ini [environments] active if it names no environment. A secret typed in plaintext
    in an overlay is no problem, as for the sync (Environments.checked): the sync encrypts it."""
    overlay_schema = relaxed(config_schema)
    overlays = {name: _check_one(path, overlay_schema, box, plaintext_secrets=False)
                for name, path in _overlay_files(data).items()}
    name = (system.get(*ACTIVE) or "").strip() if system is not None else ""
    if system is None or not name or name == BASE or name in overlays:
        return list(overlays.values()), overlays.get(name), []
    try:
        why = str(EnvironmentNotFound(check_name(name), sorted(overlays)))
    except ValidationFailed as exc:  # a name no overlay can have (the sync refuses it)
        why = exc.errors[0].message
    where = f"{SYSTEM}:{system.line_of(*ACTIVE)}: [{ACTIVE[0]}] {ACTIVE[1]} = {name!r}"
    return list(overlays.values()), None, [f"{where}: {why}; the sync refuses it"]


def _overlay_files(data: DataDir) -> dict[str, Path]:
    """The overlay files next to config.ini, by environment name: config.NAME.ini for each NAME
    that can name an environment (the files Environments.names() lists; no other is read)."""
    found = {}
    for path in sorted(data.root.glob(file_name("*"))):
        name = path.name.removeprefix("config.").removesuffix(".ini")
        with contextlib.suppress(ValidationFailed):
            found[check_name(name)] = path
    return found


def _manifest_problems(data: DataDir, box: SecretBox | None, schema: Schema) -> list[str]:
    """services.yaml is checked too (its roots come from system.ini [sync])."""
    if box is None:
        return []
    try:
        raw = data.system_ini.read_bytes()
        system = Snapshot("system.ini", raw, IniDocument(raw.decode("utf-8"), "system.ini"), schema.system, box)
        load_manifest(data.root / "services.yaml", SyncSettings.from_system(system).roots, data.root)
    except (ApphubError, OSError, UnicodeDecodeError) as exc:
        return [str(exc)]
    return []


def _check_env(path: Path, box: SecretBox) -> tuple[list[str], str | None]:
    """env.ini: it parses, its names are variables' names, its secrets decrypt."""
    try:
        raw, document = _read(path)
    except OSError as exc:
        return [f"{path.name}: cannot be read: {exc}"], None
    except IniParseError as exc:
        return [str(exc)], None
    problems = env_problems(Snapshot(path.name, raw, document, ENV_SCHEMA, box))
    names = sum(len(document.items(section)) for section in document.sections())
    return problems, f"{path.name}: OK ({len(document.sections())} scopes, {names} variables)"


def _check_one(path: Path, schema: FileSchema, box: SecretBox | None, *, plaintext_secrets: bool = True) -> Checked:
    try:
        raw, document = _read(path)
    except FileNotFoundError:
        return Checked(path.name, [f"{path.name}: does not exist in {path.parent}"])
    except OSError as exc:
        return Checked(path.name, [f"{path.name}: cannot be read: {exc}"])
    except IniParseError as exc:
        return Checked(path.name, [str(exc)])
    problems = file_problems(document, schema, box, path.name, plaintext_secrets=plaintext_secrets)
    keys = sum(len(document.items(section)) for section in document.sections())
    return Checked(path.name, problems, f"{path.name}: OK ({len(document.sections())} sections, {keys} keys)",
                   raw, document)


def _read(path: Path) -> tuple[bytes, IniDocument]:
    """A file's bytes and document; IniParseError naming the file and the line if it is not UTF-8
    (in the words IniStore uses) or does not parse; OSError if it cannot be read."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IniParseError(path.name, line, f"is not valid UTF-8 (byte {exc.start})") from exc
    return raw, IniDocument(text.removeprefix("\ufeff"), path.name)


COMMANDS = [config, check]
