"""Versions as HTTP entity tags: ETag on reads and writes, If-Match on writes, If-None-Match on reads."""

from __future__ import annotations


def etag(version: str) -> str:
    return f'"{version}"'


def parse_if_match(header: str | None) -> frozenset[str] | None:
    """The versions an If-Match header accepts; None when any version will do (absent or `*`).

    Weak tags never match: If-Match uses the strong comparison (RFC 9110 §13.1.1).
    """
    if header is None or header.strip() == "*":
        return None
    tags = set()
    for part in header.split(","):
        part = part.strip()
        if part.startswith("W/"):
            continue
        tags.add(part.strip('"'))
    return frozenset(tags)


def is_not_modified(header: str | None, version: str) -> bool:
    """Whether an If-None-Match header names `version` (weak tags too: RFC 9110 §13.1.2), or is `*`."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(part.strip().removeprefix("W/").strip('"') == version for part in header.split(","))
