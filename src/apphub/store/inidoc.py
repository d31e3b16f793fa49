"""An INI file as text plus an index of where each section and key lives in it.

configupdater parses the file (so the rules are those of Python's configparser, which Websoft9's
files were written with). Edits are applied as splices of the original lines, not by re-rendering:
configupdater rewrites a changed line as `key = value` whatever its spacing was, and we promise to
keep every byte that was not changed, `k=v` spacing, CRLF line ends and inline text included.

Some files start with keys before any `[section]` (Gitea's `app.ini` opens with `APP_NAME` and
`RUN_MODE`), which configparser refuses. `top_level=True` reads those keys into the section named
`TOP_LEVEL` (""): configparser parses the text behind a synthetic header that is never written.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from configupdater import ConfigUpdater, Option, Section

from apphub.errors import IniParseError

TOP_LEVEL = ""
# The header parsed in front of the text with top_level=True. configparser needs a header before
# the first key; NUL cannot appear in a header anyone writes, so it cannot clash with a real one.
_TOP_HEADER = "[\x00top-level\x00]\n"
_TOP_NAME = _TOP_HEADER[1:-2]

_LINE = re.compile(r"[^\n]*\n|[^\n]+")
# configparser's option line (RawConfigParser.OPTCRE with the delimiters `=` and `:`)
_OPTION_LINE = configparser.RawConfigParser.OPTCRE
# `key<ws><delimiter><ws>` at the start of an option's first line; the value follows it.
_OPTION_PREFIX = re.compile(r"^(?P<prefix>[^=:]*?\s*[=:][ \t]*)(?P<value>.*?)(?P<trailing>[ \t]*)(?P<eol>\r?\n|\r)?$")


@dataclass(frozen=True)
class SetValue:
    """Set `section.key` to `value`, adding the key (and the section) when they are missing."""

    section: str
    key: str
    value: str


@dataclass(frozen=True)
class DeleteKey:
    """Remove `section.key` and its continuation lines."""

    section: str
    key: str


Edit = SetValue | DeleteKey


@dataclass(frozen=True)
class _OptionSpan:
    key: str
    value: str
    start: int  # index of the option's first line
    end: int  # index after its last continuation line


@dataclass(frozen=True)
class _SectionSpan:
    name: str
    header: int  # index of the `[name]` line; -1 for the top-level keys, which have none
    end: int  # index after the section's last line
    options: dict[str, _OptionSpan]


class IniDocument:
    """The parsed, immutable view of one INI text. `with_edits` returns a new document.

    With `top_level=True`, keys before the first `[section]` are allowed: they are the section
    TOP_LEVEL (""), which then always exists (empty when the file has no such keys) and comes
    first in `sections()`. Without it, such keys are a parse error, as in configparser.
    """

    def __init__(self, text: str, source: str = "<string>", *, top_level: bool = False) -> None:
        self.text = text
        self.source = source
        self.top_level = top_level
        # Split at "\n" only, as configupdater does: str.splitlines also breaks at form feeds and
        # Unicode line separators, which would shift every index after them.
        self._lines: list[str] = _LINE.findall(text)
        self._sections = _index(text, source, top_level)

    def _derived(self, lines: list[str], sections: dict[str, _SectionSpan]) -> IniDocument:
        """A document of these lines whose index is already known (no parse)."""
        document = object.__new__(IniDocument)
        document.text = "".join(lines)
        document.source = self.source
        document.top_level = self.top_level
        document._lines = lines
        document._sections = sections
        return document

    # -- reading ------------------------------------------------------------------------------

    def sections(self) -> list[str]:
        return list(self._sections)

    def has_section(self, section: str) -> bool:
        return section in self._sections

    def has_key(self, section: str, key: str) -> bool:
        span = self._sections.get(section)
        return span is not None and key in span.options

    def items(self, section: str) -> list[tuple[str, str]]:
        span = self._sections[section]
        return [(option.key, option.value) for option in span.options.values()]

    def get(self, section: str, key: str) -> str | None:
        span = self._sections.get(section)
        if span is None or key not in span.options:
            return None
        return span.options[key].value

    @cached_property
    def flat(self) -> dict[tuple[str, str], str]:
        """Every value by (section, key), worked out once per document (documents are immutable):
        one dict lookup per key where a render or a resolution reads thousands."""
        return {(name, key): option.value for name, span in self._sections.items()
                for key, option in span.options.items()}

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {name: {k: o.value for k, o in span.options.items()} for name, span in self._sections.items()}

    def line_of(self, section: str, key: str | None = None) -> int | None:
        """The 1-based line of a section header, or of a key's first line."""
        span = self._sections.get(section)
        if span is None:
            return None
        if key is None:
            return span.header + 1 if span.header >= 0 else None
        option = span.options.get(key)
        return option.start + 1 if option is not None else None

    # -- editing ------------------------------------------------------------------------------

    def with_edits(self, edits: Iterable[Edit]) -> IniDocument:
        """Apply edits in order and return the new document; the old one is unchanged."""
        document = self
        for edit in edits:
            document = document._apply(edit)
        return document

    def with_values(self, edits: Iterable[SetValue]) -> IniDocument:
        """Set many keys at once, each (section, key) once: those standing on one line replaced on
        one copy of the lines (an overlay's hundreds of keys over config.ini: `with_edits` copied
        and joined the whole text once per key), the rest through `with_edits`."""
        lines = list(self._lines)
        changed: dict[str, dict[str, _OptionSpan]] = {}  # a section's options, copied once however many change
        later = []
        for edit in edits:
            span = self._sections.get(edit.section)
            option = span.options.get(edit.key) if span is not None else None
            line = None
            if span is not None and option is not None and option.end - option.start == 1 \
                    and "\n" not in edit.value and "\r" not in edit.value:
                line = _replace_value(lines[option.start], edit.value)
            if span is None or option is None or line is None or not _reads_as(line, option.key, edit.value):
                later.append(edit)
                continue
            lines[option.start] = line
            options = changed.get(edit.section)
            if options is None:
                options = changed[edit.section] = dict(span.options)
            options[edit.key] = _OptionSpan(option.key, edit.value, option.start, option.end)
        sections = dict(self._sections)
        for name, options in changed.items():
            span = sections[name]
            sections[name] = _SectionSpan(span.name, span.header, span.end, options)
        document = self._derived(lines, sections)
        return document.with_edits(later) if later else document

    def _apply(self, edit: Edit) -> IniDocument:
        for text in (edit.section, edit.key) + ((edit.value,) if isinstance(edit, SetValue) else ()):
            if "\n" in text or "\r" in text:
                raise ValueError(f"[{edit.section}] {edit.key}: a line break cannot be stored in an INI value")
        if isinstance(edit, SetValue) and (in_place := self._value_replaced_in_place(edit)) is not None:
            return in_place
        if isinstance(edit, SetValue) and edit.section == TOP_LEVEL and not self.top_level:
            raise ValueError(f"{edit.key}: a key before any [section] needs IniDocument(..., top_level=True)")
        lines = list(self._lines)
        span = self._sections.get(edit.section)
        if isinstance(edit, DeleteKey):
            if span is None or edit.key not in span.options:
                return self
            option = span.options[edit.key]
            del lines[option.start : option.end]
        elif span is not None and edit.key in span.options:
            option = span.options[edit.key]
            lines[option.start : option.end] = [_replace_value(lines[option.start], edit.value)]
        elif span is not None and span.name == TOP_LEVEL and not span.options:
            # The first top-level key goes right above the first header (after any leading
            # comment), with a blank line between it and that header.
            newline = self._newline()
            anchor = span.end
            _ensure_line_end(lines, anchor - 1, newline)
            added = [_format_option(edit.key, edit.value, True, newline)]
            if anchor < len(lines):
                added.append(newline)
            lines[anchor:anchor] = added
        elif span is not None:
            options = list(span.options.values())
            anchor = options[-1].end if options else span.header + 1
            spaced = _uses_spaces(lines[options[-1].start]) if options else True
            _ensure_line_end(lines, anchor - 1, self._newline())
            lines.insert(anchor, _format_option(edit.key, edit.value, spaced, self._newline()))
        else:
            newline = self._newline()
            if lines:
                _ensure_line_end(lines, len(lines) - 1, newline)
                if lines[-1].strip():
                    lines.append(newline)
            lines.append(f"[{edit.section}]{newline}")
            lines.append(_format_option(edit.key, edit.value, True, newline))
        document = IniDocument("".join(lines), self.source, top_level=self.top_level)
        expected = edit.value if isinstance(edit, SetValue) else None
        if document.get(edit.section, edit.key) != expected:
            # A value INI cannot hold as given (leading or trailing blanks); callers validate first.
            raise ValueError(f"[{edit.section}] {edit.key}: the value would not read back as written")
        return document

    def _value_replaced_in_place(self, edit: SetValue) -> IniDocument | None:
        """The most common edit, a new value for a key that stands on one line, without parsing
        the whole text again (that parse was most of a write's CPU time): None unless the edit is
        that and its new line reads back, by configparser's own rules, as that key and value."""
        span = self._sections.get(edit.section)
        option = span.options.get(edit.key) if span is not None else None
        if span is None or option is None or option.end - option.start != 1:
            return None
        line = _replace_value(self._lines[option.start], edit.value)
        if not _reads_as(line, option.key, edit.value):
            return None
        lines = list(self._lines)
        lines[option.start] = line
        options = {**span.options, edit.key: _OptionSpan(option.key, edit.value, option.start, option.end)}
        sections = {**self._sections, edit.section: _SectionSpan(span.name, span.header, span.end, options)}
        return self._derived(lines, sections)

    def _newline(self) -> str:
        for line in self._lines:
            if line.endswith("\r\n"):
                return "\r\n"
            if line.endswith("\n"):
                return "\n"
        return "\n"


def _index(text: str, source: str, top_level: bool = False) -> dict[str, _SectionSpan]:
    if top_level:
        # Parse behind the synthetic header, then move every index back over it.
        sections = _index_lines(_parse(_TOP_HEADER + text, source, line_offset=-1))
        top = sections.pop(_TOP_NAME)
        shifted = {TOP_LEVEL: _shift(top, TOP_LEVEL)}
        shifted.update((name, _shift(span, name)) for name, span in sections.items())
        return shifted
    return _index_lines(_parse(text, source))


def _shift(span: _SectionSpan, name: str) -> _SectionSpan:
    options = {key: _OptionSpan(o.key, o.value, o.start - 1, o.end - 1) for key, o in span.options.items()}
    return _SectionSpan(name, span.header - 1, span.end - 1, options)


def _index_lines(updater: ConfigUpdater) -> dict[str, _SectionSpan]:
    sections: dict[str, _SectionSpan] = {}
    line = 0
    for block in updater.iter_blocks():
        if not isinstance(block, Section):
            line += len(block.lines)
            continue
        header = line
        line += len(block.lines)
        options: dict[str, _OptionSpan] = {}
        for child in block.iter_blocks():
            count = len(child.lines)
            if isinstance(child, Option):
                options[child.raw_key] = _OptionSpan(child.raw_key, child.value or "", line, line + count)
            line += count
        sections[block.name] = _SectionSpan(block.name, header, line, options)
    return sections


def _parse(text: str, source: str, line_offset: int = 0) -> ConfigUpdater:
    """`line_offset`: added to every line an error names (-1 behind the synthetic top-level header)."""
    updater = ConfigUpdater(strict=True, allow_no_value=False)
    updater.optionxform = str  # type: ignore[assignment,method-assign]  # keep the key case of the file

    def at(lineno: int | None) -> int | None:
        return lineno + line_offset if lineno is not None else None

    try:
        updater.read_string(text, source=source)
    except configparser.MissingSectionHeaderError as exc:
        raise IniParseError(source, at(exc.lineno), "a key comes before any [section] header",
                            exc.line.strip()) from exc
    except configparser.DuplicateSectionError as exc:
        raise IniParseError(source, at(exc.lineno), f"section [{exc.section}] appears twice") from exc
    except configparser.DuplicateOptionError as exc:
        section = "the top level" if exc.section == _TOP_NAME else f"section [{exc.section}]"
        raise IniParseError(source, at(exc.lineno), f"key '{exc.option}' appears twice in {section}") from exc
    except configparser.ParsingError as exc:
        lineno, bad_line = exc.errors[0]
        with contextlib.suppress(ValueError, SyntaxError):
            bad_line = ast.literal_eval(bad_line)  # configparser hands the line over as repr(line)
        message = "this line is neither a [section], a key = value, nor a comment"
        raise IniParseError(source, at(lineno), message, bad_line.strip()) from exc
    except configparser.Error as exc:
        raise IniParseError(source, at(getattr(exc, "lineno", None)), "does not parse", str(exc)) from exc
    return updater


def _replace_value(first_line: str, value: str) -> str:
    match = _OPTION_PREFIX.match(first_line)
    if match is None:  # pragma: no cover - configupdater only yields options that have a delimiter
        raise ValueError(f"cannot locate the value in line {first_line!r}")
    prefix = match["prefix"]
    if value and not prefix[-1:].isspace() and prefix.rstrip()[-1:] in "=:" and _uses_spaces(first_line):
        prefix += " "
    return f"{prefix}{value}{match['eol'] or ''}"


def _reads_as(line: str, key: str, value: str) -> bool:
    """Whether configparser (as configupdater runs it: `#`/`;` comments, no inline comments, `=`
    or `:`) reads this one line as `key` with `value`, whatever lines surround it."""
    text = line.strip()
    if not text or text.startswith(("#", ";", "[")) or line[:1].isspace():
        return False
    match = _OPTION_LINE.match(text)
    return match is not None and match["option"].rstrip() == key and match["value"].strip() == value


def _uses_spaces(option_line: str) -> bool:
    match = re.match(r"^[^=:]*?(\s*)[=:]", option_line)
    return bool(match and match.group(1))


def _format_option(key: str, value: str, spaced: bool, newline: str) -> str:
    return f"{key} = {value}{newline}" if spaced else f"{key}={value}{newline}"


def _ensure_line_end(lines: list[str], index: int, newline: str) -> None:
    if 0 <= index < len(lines) and not lines[index].endswith(("\n", "\r")):
        lines[index] += newline

