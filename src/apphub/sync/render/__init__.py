"""Renderers: the bytes each target file of the manifest should hold, one module per format.

    render_file(service, spec, values, current, templates_dir) -> bytes
    check_rendered(service, spec, data) -> None

A `map` file resolves each `${...}` through Values (which records what was read), then sets
the mapped keys: `merge` into what the file holds now, keeping every other byte the format
allows (inifile, jsonfile, yamlfile, tomlfile, envfile say how much that is), or `replace` with
a file of the mapped keys only, in map order. A `template` file is rendered by template.py.

Every failure is a RenderError (a missing value is its subclass MissingValue) that starts with
`service S, file N (path)` and never holds a secret's plaintext: messages about a file's text
say where, not what, and anything a template's own code raised is masked with the plaintext of
every secret the render read. A UTF-8 byte order mark a file starts with is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from apphub.errors import RenderError
from apphub.store.validate import JsonValue
from apphub.sync.manifest import FileSpec
from apphub.sync.render import envfile, inifile, jsonfile, tomlfile, yamlfile
from apphub.sync.render.inifile import as_text
from apphub.sync.render.template import render_template
from apphub.sync.values import MissingValue, Values, mask_secrets, secret_spellings

__all__ = ["check_rendered", "describe", "render_file"]

_BOM = "\ufeff"


def describe(service: str, spec: FileSpec, number: int | None = None) -> str:
    """`service S, file N (path)`: how every message names the file it is about."""
    return f"service {service}, file {number} ({spec.path})" if number is not None \
        else f"service {service}, file {spec.path}"


def render_file(service: str, spec: FileSpec, values: Values, current: bytes | None, templates_dir: Path,
                *, number: int | None = None) -> bytes:
    """The bytes `spec.path` should hold. `current` is what the file holds now (None if missing);
    merge mode changes only the mapped keys of it and keeps every other byte it can.
    `number`: the file's 1-based place in the service's `files`, for messages."""
    try:
        if spec.template is not None:
            return render_template(templates_dir, spec.template, values, service).encode("utf-8")
        assignments = _resolve(spec, values)
        if spec.mode == "merge":
            bom, text = _decode(current or b"", "the current file")
            return (bom + _merge(spec, text, assignments)).encode("utf-8")
        return _replace(spec, assignments).encode("utf-8")
    except RenderError as exc:
        error, cause = _in_context(describe(service, spec, number), exc, values)
    # Raised out here, so that an exception showing a secret is not even its hidden __context__.
    raise error from cause


def check_rendered(service: str, spec: FileSpec, data: bytes, *, number: int | None = None) -> None:
    """Raise RenderError if `data` does not parse in spec.format (when a format is known).

    The messages say where the text breaks, never what it holds: `data` may hold secrets."""
    if spec.format is None:
        return
    where = describe(service, spec, number)
    try:
        _, text = _decode(data, "the render")
        if spec.format == "ini":
            inifile.check(text, spec.path)
        elif spec.format == "json":
            jsonfile.check(text)
        elif spec.format == "yaml":
            yamlfile.check(text)
        elif spec.format == "toml":
            tomlfile.check(text)
        else:
            envfile.check(text)
    except RenderError as exc:
        raise RenderError(f"{where}: {spec.format}: {exc}") from exc


def _resolve(spec: FileSpec, values: Values) -> list[tuple[str, JsonValue]]:
    assert spec.map is not None
    resolved = []
    for target, reference in spec.map.items():
        try:
            resolved.append((target, values.substitute(reference)))
        except MissingValue as exc:
            raise MissingValue(f"map key {target!r}: {exc}") from exc
        except RenderError as exc:
            raise RenderError(f"map key {target!r}: {exc}") from exc
    return resolved


def _texts(assignments: Sequence[tuple[str, JsonValue]]) -> list[tuple[str, str]]:
    return [(target, as_text(value)) for target, value in assignments]


def _merge(spec: FileSpec, text: str, assignments: list[tuple[str, JsonValue]]) -> str:
    if spec.format == "ini":
        return inifile.merge(text, _texts(assignments), spec.path)
    if spec.format == "json":
        return jsonfile.merge(text, assignments)
    if spec.format == "yaml":
        return yamlfile.merge(text, assignments)
    if spec.format == "toml":
        return tomlfile.merge(text, assignments)
    return envfile.merge(text, _texts(assignments))


def _replace(spec: FileSpec, assignments: list[tuple[str, JsonValue]]) -> str:
    if spec.format == "ini":
        return inifile.replace(_texts(assignments), spec.path)
    if spec.format == "json":
        return jsonfile.replace(assignments)
    if spec.format == "yaml":
        return yamlfile.replace(assignments)
    if spec.format == "toml":
        return tomlfile.replace(assignments)
    return envfile.replace(_texts(assignments))


def _decode(data: bytes, what: str) -> tuple[str, str]:
    """(byte order mark or "", text)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RenderError(f"{what} is not UTF-8 text (line {line}, byte {exc.start})") from None
    if text.startswith(_BOM):
        return _BOM, text[len(_BOM) :]
    return "", text


def _in_context(where: str, exc: RenderError, values: Values) -> tuple[RenderError, BaseException | None]:
    """The error to raise, prefixed with the file and masked, and the cause to chain: none when
    any exception of the chain shows a secret (a traceback would print it)."""
    try:
        secrets = secret_spellings(values.secret_texts())
    except RenderError:  # a secret that does not decrypt: its plaintext cannot leak either
        secrets = []
    detail = mask_secrets(str(exc), secrets)
    error = MissingValue(f"{where}: {detail}") if isinstance(exc, MissingValue) else RenderError(f"{where}: {detail}")
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        chained = pending.pop()
        if id(chained) in seen:
            continue
        seen.add(id(chained))
        if any(secret in str(chained) for secret in secrets):
            return error, None
        pending.extend(link for link in (chained.__cause__, chained.__context__) if link is not None)
    return error, exc
