"""How tests/fixtures/standin-specs/*.json were made: the operations the stand-ins serve, cut out of the official specs.

Run it from the repository root, with the folder of the reference specs (the tests themselves need only
its output, so a clone without `shared/reference/` runs them):

    python -m tests.standins.extract_specs [/work/shared/reference]

For each product it keeps the operations listed below, unchanged, together with everything they reach by
`$ref` (definitions, responses, components), the security schemes and the top-level keys that say where the
API lives (`basePath`, `servers`). Nothing is edited: where a spec is wrong, the stand-in says so in its own
code, next to the correction, so a refreshed extract cannot silently drop it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

DEFAULT_REFERENCE = Path("/work/shared/reference")
OUT = Path(__file__).resolve().parents[1] / "fixtures" / "standin-specs"

# (file in shared/reference, {path template: [methods]}) per product; templates are relative to the base path.
SOURCES: dict[str, tuple[str, dict[str, list[str]]]] = {
    "gitea": ("gitea-v1.26.3-swagger-v1.json", {
        "/version": ["get"],
        "/user": ["get"],
        "/users/{username}/tokens": ["get", "post"],
        "/users/{username}/tokens/{token}": ["delete"],
        "/user/repos": ["post"],
        "/repos/{owner}/{repo}": ["get"],
        "/repos/{owner}/{repo}/hooks": ["get", "post"],
        "/repos/{owner}/{repo}/hooks/{id}": ["get", "patch", "delete"],
    }),
    "portainer": ("portainer-ee-2.44.0-openapi-patched.yaml", {
        "/system/status": ["get"],
        "/status": ["get"],
        "/settings/public": ["get"],
        "/users/admin/check": ["get"],
        "/users/admin/init": ["post"],
        "/auth": ["post"],
        "/endpoints": ["get", "post"],
    }),
    "npm": ("npm-openapi-v2.15.1-dereferenced.json", {
        "/": ["get"],
        "/tokens": ["post"],
        "/users": ["post"],
        "/users/{userID}": ["get", "put"],
        "/users/{userID}/auth": ["put"],
    }),
}

# Top-level keys that are not operations but say how to call them.
KEEP_TOP = ("swagger", "openapi", "info", "basePath", "servers", "consumes", "produces", "security",
            "securityDefinitions")


def load(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return document


def refs_in(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/"):
                found.append(value)
            else:
                found.extend(refs_in(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(refs_in(item))
    return found


def pointer_parts(ref: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/")]


def extract(spec: dict[str, Any], wanted: dict[str, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {key: spec[key] for key in KEEP_TOP if key in spec}
    out["paths"] = {}
    for template, methods in wanted.items():
        item = spec["paths"][template]
        kept = {key: value for key, value in item.items() if key in methods or key == "parameters"}
        missing = set(methods) - set(kept)
        if missing:
            raise SystemExit(f"{template}: the spec has no {sorted(missing)}")
        out["paths"][template] = kept
    if "components" in spec and "securitySchemes" in spec["components"]:
        out.setdefault("components", {})["securitySchemes"] = spec["components"]["securitySchemes"]
    pending = refs_in(out)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        source: Any = spec
        target = out
        parts = pointer_parts(ref)
        for part in parts[:-1]:
            source = source[part]
            target = target.setdefault(part, {})
        target[parts[-1]] = source[parts[-1]]
        pending.extend(refs_in(source[parts[-1]]))
    return out


def main(argv: list[str]) -> None:
    reference = Path(argv[0]) if argv else DEFAULT_REFERENCE
    OUT.mkdir(parents=True, exist_ok=True)
    for product, (filename, wanted) in SOURCES.items():
        extracted = extract(load(reference / filename), wanted)
        extracted["x-extracted-from"] = f"shared/reference/{filename}"
        target = OUT / f"{product}.json"
        target.write_text(json.dumps(extracted, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{target}: {len(extracted['paths'])} paths, {target.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
