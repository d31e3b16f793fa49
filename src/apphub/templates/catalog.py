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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from apphub.errors import NotFound, SchemaError
from apphub.store.schema import KeySpec
from apphub.store.secrets import MASK

FOLDER = "config-templates"  # in the data folder (templates/ holds the services' file templates)
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

Value = str | int | bool | list[str]


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
        if not NAME.match(name):
            raise ValueError(f"{name!r}: a template's name is 1-64 lower-case letters, digits, '_' or '-'")
        return name

    @field_validator("variables")
    @classmethod
    def _variable_names(cls, variables: dict[str, KeySpec]) -> dict[str, KeySpec]:
        for name in variables:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"{name!r} cannot name a variable: use letters, digits and '_'")
        return variables

    @property
    def kind(self) -> str:
        return "section" if len(self.settings) == 1 else "configuration"

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "kind": self.kind,
                "sections": list(self.settings), "source": self.source}

    def as_dict(self, is_secret: Callable[[str, str], bool] = lambda section, key: False) -> dict[str, Any]:
        """The template as an API shows it: a secret variable's default, and a value it sets for a
        secret key (`is_secret`: config.ini's schema) other than through a variable, masked."""
        variables = {}
        for name, spec in self.variables.items():
            shown = spec.model_dump(exclude_defaults=True)
            if spec.secret and spec.default not in (None, ""):
                shown["default"] = MASK
            variables[name] = shown
        settings = {section: {key: MASK if is_secret(section, key) and "{{" not in str(value) and value != ""
                              else value for key, value in keys.items()}
                    for section, keys in self.settings.items()}
        return {**self.summary(), "variables": variables, "settings": settings}


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
