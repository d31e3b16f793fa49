"""Jinja2 templates: sandboxed, strict, and confined to the templates folder.

A template sees `settings` (config.ini in plaintext, typed, schema defaults filled in:
`settings.web.port`), `env` (the environment: `env.HOME`) and `service` (the service's name).
Every value it reads is recorded in the Values it renders from, as a `${...}` of a map is.

- The environment is Jinja's ImmutableSandboxedEnvironment: no attribute starting with `_`
  (so no `''.__class__.__mro__` escape), no unsafe callables, and no method that changes a list
  or dict, since those are the values' own cached objects.
- StrictUndefined: a missing key, section or variable is an error, never an empty string.
- The loader reads only files inside the templates folder: no absolute name, no `..`, and no
  symlink that leads out of it. An edited template is seen at the next render: the compiled
  one is reused only while the file's text is the same (a timestamp can miss a quick edit).
- Output: `true`/`false` for booleans and comma-joined lists, as `${...}` writes them in text.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from apphub.errors import RenderError
from apphub.sync.render.inifile import as_text
from apphub.sync.values import EnvView, SectionView, SettingsView, Values


class OutsideTemplates(TemplateNotFound):
    """A template name that would read a file outside the templates folder."""


class ConfinedLoader(BaseLoader):
    """Loads `name` from `root`, refusing any name that leads outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real_root = os.path.realpath(root)

    def locate(self, name: str) -> Path:
        parts = PurePosixPath(name).parts
        if not name or name.startswith("/") or "\\" in name or "\x00" in name or ".." in parts:
            raise OutsideTemplates(name, f"{name!r} is not a path inside the templates folder (no '/', no '..')")
        path = self.root.joinpath(*parts)
        real = os.path.realpath(path)
        if real != self._real_root and not real.startswith(self._real_root.rstrip(os.sep) + os.sep):
            raise OutsideTemplates(name, f"{name!r} leads outside the templates folder")
        return path

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        path = self.locate(template)
        try:
            source = path.read_bytes().decode("utf-8")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise TemplateNotFound(template) from exc
        except UnicodeDecodeError as exc:
            raise TemplateError(f"{template!r} is not UTF-8 text") from exc
        except OSError as exc:
            raise TemplateError(f"{template!r} cannot be read: {exc.strerror}") from exc

        def unchanged() -> bool:
            try:
                return path.read_bytes().decode("utf-8") == source
            except (OSError, UnicodeDecodeError):
                return False

        return source, str(path), unchanged


class TemplateEnv(EnvView):
    """`env` for a template: a variable that is not set is recorded too (setting it later must
    render the template again), then reads as undefined."""

    def __getitem__(self, name: str) -> str:
        return self._values.env(name)  # MissingValue is a KeyError: Jinja makes it undefined


class _Undefined(StrictUndefined):
    """StrictUndefined whose message names the setting the way the template wrote it."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        owner, name = self._undefined_obj, self._undefined_name
        if self._undefined_hint is None and isinstance(name, str):
            if isinstance(owner, SettingsView):
                return f"settings.{name}: config.ini has no section [{name}], and the schema names none"
            if isinstance(owner, SectionView):
                where = repr(owner).strip("<>")  # "settings.web"
                section = where.removeprefix("settings.")
                return f"{where}.{name}: config.ini has no key '{name}' in [{section}], and the schema gives no default"
            if isinstance(owner, EnvView):
                return f"env.{name}: the environment variable {name} is not set"
        if owner is missing and isinstance(name, str):
            return f"{name!r} is undefined (a template sees settings, env and service)"
        return str(super()._undefined_message)


def _finalize(value: Any) -> Any:
    if isinstance(value, bool):
        return as_text(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return as_text(value)
    return value


@functools.lru_cache(maxsize=32)
def environment_for(templates_dir: str) -> ImmutableSandboxedEnvironment:
    """One environment per templates folder, so compiled templates are reused between renders."""
    return ImmutableSandboxedEnvironment(
        loader=ConfinedLoader(Path(templates_dir)),
        undefined=_Undefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_finalize,
    )


def render_template(templates_dir: Path, name: str, values: Values, service: str) -> str:
    """The text of template `name`; RenderError naming the template and line of any failure."""
    environment = environment_for(str(templates_dir))
    context = {"settings": SettingsView(values), "env": TemplateEnv(values), "service": service}
    try:
        return environment.get_template(name).render(context)
    except TemplateSyntaxError as exc:
        at = _template_frames(exc, templates_dir)
        broken = (_relative(exc.filename, templates_dir) or exc.name or name, exc.lineno)
        if not at or at[-1] != broken:  # Jinja usually adds a frame for the broken line itself
            at.append(broken)
        raise RenderError(_located(at, f"syntax error: {exc.message}")) from exc
    except TemplateNotFound as exc:
        at = _template_frames(exc, templates_dir)
        outside = str(exc.message) if isinstance(exc, OutsideTemplates) else None
        if not at:
            problem = outside or f"no such file in the templates folder {templates_dir}"
            raise RenderError(f"template {name}: {problem}") from exc
        raise RenderError(_located(at, outside or f"includes {exc.name!r}, which does not exist")) from exc
    except RenderError as exc:  # a value that cannot be read (a secret that does not decrypt)
        raise RenderError(_located(_template_frames(exc, templates_dir), str(exc), name)) from exc
    except Exception as exc:  # anything the template's own code raised: undefined, sandbox, TypeError...
        detail = str(exc) if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}"
        raise RenderError(_located(_template_frames(exc, templates_dir), detail, name)) from exc


def _template_frames(exc: BaseException, templates_dir: Path) -> list[tuple[str, int | None]]:
    """(template, line) of each template frame of the traceback, outermost first. Jinja rewrites
    the traceback so that template code shows as frames of the template file."""
    frames = []
    for frame in traceback.extract_tb(exc.__traceback__):
        name = _relative(frame.filename, templates_dir)
        if name is not None:
            frames.append((name, frame.lineno))
    return frames


def _relative(filename: str | None, templates_dir: Path) -> str | None:
    root = str(templates_dir).rstrip(os.sep) + os.sep
    if filename and filename.startswith(root):
        return filename[len(root) :]
    return None


def _located(frames: list[tuple[str, int | None]], detail: str, fallback: str | None = None) -> str:
    """`template inc.j2, line 2 (included from main.j2, line 5): detail` (innermost first)."""
    if not frames:
        return f"template {fallback}: {detail}" if fallback else detail
    inner, *outer = frames[::-1]
    text = f"template {inner[0]}, line {inner[1]}"
    if outer:
        text += " (" + ", ".join(f"included from {name}, line {line}" for name, line in outer) + ")"
    return f"{text}: {detail}"
