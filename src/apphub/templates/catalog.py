"""Configuration templates: named starting points for the whole configuration or one section,
with declared variables (typed like schema keys: a type, a default, `required`, `secret`,
`generate: password`). The shipped ones are in `templates/builtin/`; an operator adds their own as
`DATA/config-templates/*.yaml` (one of the same name replaces a shipped one):

    name: gitea-https
    description: Gitea behind its own domain over TLS
    variables:
      domain: {type: hostname, required: true, description: Gitea's public host name}
      email: {type: email, default: "ops@{{ domain }}"}
    settings:
      gitea:
        base_url: "https://{{ domain }}/api/v1"
        user_email: "{{ email }}"

A value is a Jinja template over the variables (sandboxed; an unknown name is an error). What it
renders is an ordinary write of config.ini (templates/apply.py). A template whose settings name a
single section is a section template (`kind`).

Shown (API, CLI), a template hides what would reveal a password it sets: the text of a secret key
(config.ini's schema) whole, since an inline literal is the password itself (only a bare
`{{ name }}` of a variable stays, naming what sets it), and the default of every variable that
feeds a secret key (`secret_variables`), marked `secret` or not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, TemplateSyntaxError, meta, nodes
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from apphub.errors import NotFound, SchemaError
from apphub.store.schema import KeySpec
from apphub.store.secrets import mask

FOLDER = "config-templates"  # in the data folder (templates/ holds the services' file templates)
# Whole names only (fullmatch): `$` would let a name ending in a newline through.
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Only parses a value to find the names it uses; nothing renders with it (so escaping is moot).
_PARSER = Environment(autoescape=True)

Value = str | int | bool | list[str]
IsSecret = Callable[[str, str], bool]  # (section, key): config.ini's schema says the key is a secret


def no_secret_keys(section: str, key: str) -> bool:
    return False


def names_used(value: object, declared: Collection[str]) -> set[str]:
    """The declared variables a value's text uses. A text that does not parse is taken to use every
    declared name written in it as a word: what it would reveal is judged as if it rendered."""
    if not isinstance(value, str):
        return set()
    try:
        found = meta.find_undeclared_variables(_PARSER.parse(value))
    except TemplateSyntaxError:
        found = set(VARIABLE.findall(value))
    return found & set(declared)


def is_reference(value: object, declared: Collection[str]) -> bool:
    """Whether a value's text is only `{{ name }}` of a declared variable: it shows which variable
    sets the key, and nothing of what the variable holds."""
    if not isinstance(value, str):
        return False
    try:
        body = _PARSER.parse(value).body
    except TemplateSyntaxError:
        return False
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return False
    found = body[0].nodes[0]
    return isinstance(found, nodes.Name) and found.name in declared


class TemplateNotFound(NotFound):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"there is no template '{name}' (known: {', '.join(known) or 'none'})")


class Template(BaseModel):
    """One template as its file declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    variables: dict[str, KeySpec] = Field(default_factory=dict)
    settings: dict[str, dict[str, Value]]
    source: str = ""  # the file it came from (set when loaded)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.fullmatch(name):
            raise ValueError(f"{name!r}: a template's name is 1-64 lower-case letters, digits, '_' or '-'")
        return name

    @field_validator("variables")
    @classmethod
    def _variable_names(cls, variables: dict[str, KeySpec]) -> dict[str, KeySpec]:
        for name in variables:
            if not VARIABLE.fullmatch(name):
                raise ValueError(f"{name!r} cannot name a variable: use letters, digits and '_'")
        return variables

    @property
    def kind(self) -> str:
        return "section" if len(self.settings) == 1 else "configuration"

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "kind": self.kind,
                "sections": list(self.settings), "source": self.source}

    def secret_variables(self, is_secret: IsSecret) -> set[str]:
        """The variables whose value is, or is part of, a password the template sets: those marked
        `secret`, those the text of a secret key uses, and, to any depth, those the default of one
        of these uses (`pw: {default: "{{ stem }}-83"}` makes `stem` part of the password)."""
        declared = self.variables.keys()
        found = {name for name, spec in self.variables.items() if spec.secret}
        for section, keys in self.settings.items():
            found |= {name for key, value in keys.items() if is_secret(section, key)
                      for name in names_used(value, declared)}
        pending = list(found)
        while pending:
            for name in names_used(self.variables[pending.pop()].default, declared) - found:
                found.add(name)
                pending.append(name)
        return found

    def as_dict(self, is_secret: IsSecret = no_secret_keys) -> dict[str, Any]:
        """The template as an API shows it (`is_secret`: config.ini's schema): a secret key's value
        masked whole (an inline literal, plain text, or a literal joined to a variable, is the
        password or part of it) unless it is only `{{ name }}` of a variable; and the default (and
        choices) of every variable that feeds a secret key (`secret_variables`)."""
        secret = self.secret_variables(is_secret)
        variables = {name: _shown_variable(spec, name in secret) for name, spec in self.variables.items()}
        settings = {section: {key: self._shown_setting(value, is_secret(section, key))
                              for key, value in keys.items()}
                    for section, keys in self.settings.items()}
        return {**self.summary(), "variables": variables, "settings": settings}

    def _shown_setting(self, value: Value, secret: bool) -> Value | None:
        if not secret or is_reference(value, self.variables.keys()):
            return value
        return _masked(value)


def _shown_variable(spec: KeySpec, secret: bool) -> dict[str, Any]:
    shown = spec.model_dump(exclude_defaults=True)
    if secret:
        if "default" in shown:
            shown["default"] = _masked(shown["default"])
        if "choices" in shown:  # an enum of passwords lists them
            shown["choices"] = [mask(choice) for choice in shown["choices"]]
    return shown


def _masked(value: Value | None) -> Value | None:
    """The mask for a value that is there; "" and None stay (nothing to hide)."""
    if value is None or value == "" or value == []:
        return value
    return mask(str(value))


class Catalog:
    """The templates of one data folder: the shipped ones, then the operator's (same name wins)."""

    def __init__(self, data_root: Path) -> None:
        self.folder = data_root / FOLDER
        self.problems: list[str] = []  # the operator's files that could not be read (the others still serve)

    def all(self) -> dict[str, Template]:
        found: dict[str, Template] = {}
        self.problems = []
        builtin = resources.files("apphub.templates").joinpath("builtin")
        for entry in sorted(builtin.iterdir(), key=lambda each: each.name):
            if entry.name.endswith(".yaml"):
                template = _parse(entry.read_text(encoding="utf-8"), f"<built-in {entry.name}>")
                found[template.name] = template
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.yaml")):
                try:
                    template = _parse(path.read_text(encoding="utf-8"), str(path))
                except (OSError, UnicodeDecodeError) as exc:
                    self.problems.append(f"{path}: cannot be read: {exc}")
                    continue
                except SchemaError as exc:
                    self.problems.append(str(exc))
                    continue
                found[template.name] = template
        return found

    def get(self, name: str) -> Template:
        templates = self.all()
        if name not in templates:
            broken = [problem for problem in self.problems if f"/{name}.yaml" in problem or f"name: {name}" in problem]
            if broken:
                raise SchemaError(broken[0])
            raise TemplateNotFound(name, sorted(templates))
        return templates[name]


def _parse(text: str, source: str) -> Template:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SchemaError(f"{source}: is not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise SchemaError(f"{source}: a template is a mapping with name, variables and settings")
    try:
        return Template.model_validate({**document, "source": source})
    except ValidationError as exc:
        problems = "\n".join(f"  {'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors())
        raise SchemaError(f"{source}: invalid template:\n{problems}") from exc
