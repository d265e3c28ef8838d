"""The one matcher for reservation patterns, shared by the server and the git pre-commit hook.

A pattern is a repo-relative, ``/``-separated list of segments. Inside a segment: ``*`` (any run
of characters except ``/``, possibly empty), ``?`` (one character except ``/``), ``[...]`` (a
character class; ``!`` or ``^`` first negates it, ``a-c`` is a range, ``]`` always closes it) and
``{a,b,c}`` (alternatives; not nested, never containing ``/``). ``**`` is allowed only as a whole
segment and matches any number of segments, zero included. There is no escape character
(``\\`` is a path separator); match a literal ``*``, ``?``, ``[``, ``{`` or ``}`` with a class such
as ``[*]``, and a literal ``]`` with ``?``. Matching is case-sensitive.

A pattern *covers* every path it matches and everything below those paths, so reserving ``src``,
``src/*`` or ``src/**`` covers ``src/a/b.py`` (and ``a/**`` covers ``a`` itself, since ``**`` may
match zero segments). Two patterns *overlap* when some path is covered by both; that is decided
by an exact intersection of the two patterns (a DP over segments in which ``**`` absorbs any
number of segments, and inside it a DP over characters in which ``*`` absorbs any number of
characters and classes are intersected as sets of code points), never by matching one pattern's
text against the other.

The SQL pre-filter rests on :func:`literal_prefix`: a path covered by a pattern starts with the
pattern's literal prefix (as whole segments), so if two patterns overlap then one's literal prefix
equals, or is a segment-prefix of, the other's (the empty prefix is a segment-prefix of every
prefix). Only pairs passing that test need :func:`patterns_overlap`.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import product
from pathlib import Path

from jetpack.errors import InvalidInput

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_SEGMENTS",
    "PatternError",
    "covers",
    "literal_prefix",
    "normalise_pattern",
    "patterns_overlap",
]

MAX_PATTERN_LENGTH = 1024
MAX_SEGMENTS = 64
MAX_ALTERNATIVES = 256  # brace alternatives one segment may expand to
_MAX_RAW_LENGTH = 4 * MAX_PATTERN_LENGTH  # input longer than this is refused before any work

GLOBSTAR = "**"
GLOB_CHARS = frozenset("*?[]{}")
_DRIVE = re.compile(r"^[A-Za-z]:(/|$)")  # absolute on Windows only; elsewhere "C:" is a directory name

# A character class is a sorted tuple of disjoint, non-adjacent code-point intervals; a segment
# never contains "/", so no class does either. ``None`` stands for ``*``.
_Interval = tuple[int, int]
_Class = tuple[_Interval, ...]
_Atom = _Class | None
_Alternative = tuple[_Atom, ...]

_MAX_CODE_POINT = 0x10FFFF
_SLASH = ord("/")
_ANY_CHAR: _Class = ((0, _SLASH - 1), (_SLASH + 1, _MAX_CODE_POINT))


class PatternError(InvalidInput):
    """A malformed glob; the message says what is wrong and how to write it instead."""


# ---------------------------------------------------------------------------------------------
# Normalisation


def normalise_pattern(raw: str, repo_root: Path | None = None) -> str:
    """The canonical, validated form of a reservation pattern (or a plain repo-relative path).

    Strips surrounding whitespace, turns ``\\`` into ``/``, drops empty and ``.`` segments and a
    trailing ``/``, resolves ``..`` lexically, collapses repeated ``**`` segments, and makes an
    absolute path relative to ``repo_root`` (lexically: symlinks are not resolved). Raises
    :class:`PatternError` for malformed globs and :class:`InvalidInput` for empty patterns and
    paths outside the repository. Normalising the result again returns it unchanged.
    """
    if len(raw) > _MAX_RAW_LENGTH:
        raise PatternError(
            f"pattern is {len(raw):,} characters long; at most {MAX_PATTERN_LENGTH:,} are allowed "
            "(reserve a parent directory or a shorter glob instead)"
        )
    current = _normalise_once(raw, repo_root, glob=True)
    while True:  # stripping can expose more to normalise (e.g. "./ a"); each pass only shortens
        again = _normalise_once(current, None, glob=True)
        if again == current:
            return current
        current = again


def _normalise_path(raw: str) -> str:
    """A literal repo-relative path in canonical form (no glob syntax is interpreted or checked)."""
    current = _normalise_once(raw, None, glob=False)
    while True:
        again = _normalise_once(current, None, glob=False)
        if again == current:
            return current
        current = again


def _normalise_once(raw: str, repo_root: Path | None, *, glob: bool) -> str:
    what = "pattern" if glob else "path"
    text = raw.strip().replace("\\", "/")
    if glob:
        _check_characters(text)
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts:
        raise InvalidInput(
            f"{what} {_show(raw)} is empty; name a file, directory or glob relative to the repository root "
            "(to reserve the whole repository, use '**' explicitly)"
        )
    drive = os.name == "nt" and _DRIVE.match(text) is not None
    if text.startswith("/") or drive:
        segments = _relative_to_root(raw, parts, repo_root, drive=drive, glob=glob)
    else:
        segments = _resolve_dots(raw, parts, floor=0, absolute=False, glob=glob)
    if not segments:
        raise InvalidInput(
            f"{what} {_show(raw)} names the repository root itself; name something inside it "
            "(to reserve the whole repository, use '**' explicitly)"
        )
    if glob:
        segments = _collapse_globstars(segments)
        for segment in segments:
            if segment != GLOBSTAR:
                try:
                    _alternatives(segment)
                except PatternError as error:
                    if segment == raw:
                        raise
                    raise PatternError(f"pattern {_show(raw)}: {error}") from None
    result = "/".join(segments)
    if glob and len(segments) > MAX_SEGMENTS:
        raise PatternError(
            f"pattern {_show(raw)} has {len(segments)} segments; at most {MAX_SEGMENTS} are allowed "
            "(reserve a parent directory instead)"
        )
    if glob and len(result) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"pattern {_show(raw)} is {len(result):,} characters long; at most {MAX_PATTERN_LENGTH:,} are allowed "
            "(reserve a parent directory or a shorter glob instead)"
        )
    return result


def _check_characters(text: str) -> None:
    for index, char in enumerate(text):
        if unicodedata.category(char) == "Cc":
            raise PatternError(
                f"pattern {_show(text)} contains the control character U+{ord(char):04X} at position {index}; "
                "remove it (paths in reservations are plain text)"
            )


def _resolve_dots(raw: str, parts: list[str], *, floor: int, absolute: bool, glob: bool) -> list[str]:
    """Resolve ``..`` lexically; ``floor`` leading segments (a drive) are never removed."""
    stack: list[str] = []
    for part in parts:
        if part != "..":
            stack.append(part)
        elif len(stack) > floor:
            if glob and stack[-1] == GLOBSTAR:
                raise PatternError(
                    f"pattern {_show(raw)} has '..' right after '**', which may stand for zero segments, "
                    "so its parent is unknown; remove the '..' or name the directory it should climb out of"
                )
            stack.pop()
        elif not absolute:
            raise InvalidInput(
                f"{_show(raw)} is outside the repository ('..' climbs above the repository root); "
                "give a path inside the repository, relative to its root"
            )
        # ".." at the root of an absolute path stays at the root, as in POSIX.
    return stack


def _relative_to_root(raw: str, parts: list[str], repo_root: Path | None, *, drive: bool, glob: bool) -> list[str]:
    if repo_root is None:
        raise InvalidInput(
            f"{_show(raw)} is an absolute path, but no repository root is known here; "
            "give the path relative to the repository root"
        )
    root_text = Path(os.path.abspath(os.fspath(repo_root))).as_posix()
    root = [part for part in root_text.split("/") if part]
    segments = _resolve_dots(raw, parts, floor=1 if drive else 0, absolute=True, glob=glob)
    head = segments[: len(root)]
    if len(head) < len(root) or any(not _same_root_part(a, b) for a, b in zip(head, root, strict=True)):
        raise InvalidInput(
            f"{_show(raw)} is outside the repository root {root_text}; "
            "give a path inside it, preferably relative to the repository root"
        )
    return segments[len(root) :]


def _same_root_part(path_part: str, root_part: str) -> bool:
    if len(root_part) == 2 and root_part[1] == ":":  # Windows drive letters are case-insensitive
        return path_part.upper() == root_part.upper()
    return path_part == root_part


def _collapse_globstars(segments: list[str]) -> list[str]:
    collapsed: list[str] = []
    for segment in segments:
        if not (segment == GLOBSTAR and collapsed and collapsed[-1] == GLOBSTAR):
            collapsed.append(segment)
    return collapsed


def _show(text: str) -> str:
    return repr(text if len(text) <= 120 else text[:117] + "...")


# ---------------------------------------------------------------------------------------------
# Parsing one segment into brace-expanded alternatives of atoms


@lru_cache(maxsize=16_384)
def _alternatives(segment: str) -> tuple[_Alternative, ...]:
    """The alternatives a (non-``**``) segment expands to; raises PatternError if malformed."""
    where = f"segment {_show(segment)}"
    parts: list[list[list[_Atom]]] = []  # each part: its alternatives (a fixed run has one)
    run: list[_Atom] = []
    braces: list[list[_Atom]] | None = None
    brace_start = 0
    index = 0
    while index < len(segment):
        char = segment[index]
        target = braces[-1] if braces is not None else run
        if char == "[":
            atom, index = _parse_class(segment, index, where)
            target.append(atom)
            continue
        if char == "*":
            if index + 1 < len(segment) and segment[index + 1] == "*":
                raise PatternError(
                    f"'**' in {where} is not a whole segment; '**' must stand alone between slashes "
                    "(write 'src/**/*.py' rather than 'src/**.py', or use a single '*' within a name)"
                )
            if not target or target[-1] is not None:
                target.append(None)
        elif char == "?":
            target.append(_ANY_CHAR)
        elif char == "]":
            raise PatternError(
                f"unbalanced ']' in {where}: there is no '[' opening a character class; "
                "remove it, or match a literal ']' with '?'"
            )
        elif char == "{":
            if braces is not None:
                raise PatternError(
                    f"nested '{{' in {where}: brace alternatives cannot be nested; "
                    "list every combination in one '{a,b,c}' or reserve several patterns"
                )
            parts.append([run])
            run = []
            braces = [[]]
            brace_start = index
        elif char == "}":
            if braces is None:
                raise PatternError(
                    f"unbalanced '}}' in {where}: there is no '{{' opening it; "
                    "remove it, or match a literal '}' with '[}]'"
                )
            if index == brace_start + 1:
                raise PatternError(
                    f"empty '{{}}' in {where}: braces need at least one alternative, as in '{{src,lib}}'; "
                    "remove them or fill them in"
                )
            parts.append(braces)
            braces = None
        elif char == "," and braces is not None:
            braces.append([])
        else:
            target.append(((ord(char), ord(char)),))
        index += 1
    if braces is not None:
        raise PatternError(
            f"unbalanced '{{' in {where}: the brace alternatives are never closed; add the '}}' "
            "(alternatives cannot contain '/'; reserve several patterns instead), or match a literal '{' with '[{]'"
        )
    parts.append([run])
    return _expand(parts, where)


def _expand(parts: list[list[list[_Atom]]], where: str) -> tuple[_Alternative, ...]:
    count = 1
    for part in parts:
        count *= len(part)
    if count > MAX_ALTERNATIVES:
        raise PatternError(
            f"the braces in {where} expand to {count:,} alternatives; at most {MAX_ALTERNATIVES} are allowed "
            "(use '*', '?' or a character class instead)"
        )
    expanded: dict[_Alternative, None] = {}
    for choice in product(*parts):
        atoms: list[_Atom] = []
        for piece in choice:
            for atom in piece:
                if not (atom is None and atoms and atoms[-1] is None):
                    atoms.append(atom)
        alternative = tuple(atoms)
        if not alternative:
            raise PatternError(
                f"a brace alternative in {where} leaves the segment empty; "
                "every alternative must name something (drop the empty alternative)"
            )
        if alternative in (_literal_atoms("."), _literal_atoms("..")):
            raise PatternError(
                f"a brace alternative in {where} makes the segment '.' or '..'; "
                "write the directory you mean instead of relying on '.' or '..' inside braces"
            )
        expanded[alternative] = None
    return tuple(expanded)


def _parse_class(segment: str, start: int, where: str) -> tuple[_Class, int]:
    """Parse ``[...]`` at ``segment[start]``; return the class and the index after its ``]``."""
    body_start = start + 1
    negated = body_start < len(segment) and segment[body_start] in "!^"
    if negated:
        body_start += 1
    close = segment.find("]", body_start)
    if close < 0:
        raise PatternError(
            f"unbalanced '[' in {where}: the character class is never closed; add the ']' "
            "(a class cannot contain '/'), or match a literal '[' with '[[]'"
        )
    body = segment[body_start:close]
    if not body:
        shown = segment[start : close + 1]
        raise PatternError(
            f"empty character class {shown!r} in {where}; put at least one character in it "
            "(a ']' always closes a class: match a literal ']' with '?')"
        )
    ranges: list[_Interval] = []
    index = 0
    while index < len(body):
        if index + 2 < len(body) and body[index + 1] == "-":
            low, high = body[index], body[index + 2]
            if low > high:
                raise PatternError(f"reversed range '{low}-{high}' in {where}; write it as '{high}-{low}'")
            ranges.append((ord(low), ord(high)))
            index += 3
        else:
            ranges.append((ord(body[index]), ord(body[index])))
            index += 1
    intervals = _merge(ranges)
    if negated:
        intervals = _complement(intervals)
    intervals = _intersect_intervals(intervals, _ANY_CHAR)
    if not intervals:
        raise PatternError(f"character class {segment[start : close + 1]!r} in {where} matches no character")
    return intervals, close + 1


def _merge(ranges: list[_Interval]) -> _Class:
    merged: list[_Interval] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)


def _complement(intervals: _Class) -> _Class:
    result: list[_Interval] = []
    next_low = 0
    for low, high in intervals:
        if low > next_low:
            result.append((next_low, low - 1))
        next_low = high + 1
    if next_low <= _MAX_CODE_POINT:
        result.append((next_low, _MAX_CODE_POINT))
    return tuple(result)


def _intersect_intervals(a: _Class, b: _Class) -> _Class:
    result: list[_Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if low <= high:
            result.append((low, high))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(result)


def _classes_meet(a: _Class, b: _Class) -> bool:
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False


def _literal_atoms(text: str) -> _Alternative:
    return tuple(((ord(char), ord(char)),) for char in text)


# ---------------------------------------------------------------------------------------------
# Intersection


def _alternatives_meet(a: _Alternative, b: _Alternative) -> bool:
    """Whether some string (free of '/') matches both alternatives: a DP over atom positions.

    ``reach[i][j]`` says some common prefix leaves ``a`` at atom ``i`` and ``b`` at atom ``j``.
    A ``*`` may match nothing (skip it) or take the character the other side's class takes.
    Every class is non-empty, and if both sides can only match "" they are all stars and so also
    share every non-empty string, so a reachable end means a real, non-empty common segment.
    """
    n, m = len(a), len(b)
    reach = [bytearray(m + 1) for _ in range(n + 1)]
    reach[0][0] = 1
    for i in range(n + 1):
        row = reach[i]
        for j in range(m + 1):
            if not row[j]:
                continue
            if i == n and j == m:
                return True
            atom_a = a[i] if i < n else ()
            atom_b = b[j] if j < m else ()
            if atom_a is None:
                reach[i + 1][j] = 1
                if atom_b:
                    row[j + 1] = 1
            if atom_b is None:
                row[j + 1] = 1
                if atom_a:
                    reach[i + 1][j] = 1
            if atom_a and atom_b and _classes_meet(atom_a, atom_b):
                reach[i + 1][j + 1] = 1
    return False


@lru_cache(maxsize=65_536)
def _segments_meet(a: str, b: str) -> bool:
    """Whether two (non-``**``) segment globs share a segment; called with ``a <= b``."""
    if a == b:
        return True
    if GLOB_CHARS.isdisjoint(a) and GLOB_CHARS.isdisjoint(b):
        return False
    return any(_alternatives_meet(x, y) for x in _alternatives(a) for y in _alternatives(b))


def _segments_meet_sym(a: str, b: str) -> bool:
    return _segments_meet(a, b) if a <= b else _segments_meet(b, a)


@lru_cache(maxsize=65_536)
def _segment_matches(glob: str, name: str) -> bool:
    """Whether the segment glob matches the literal segment ``name``."""
    if GLOB_CHARS.isdisjoint(glob):
        return glob == name
    literal = _literal_atoms(name)
    return any(_alternatives_meet(alternative, literal) for alternative in _alternatives(glob))


def _walk(a: Sequence[str], b: Sequence[str], *, b_may_globstar: bool, meet: Callable[[str, str], bool]) -> bool:
    """Whether some sequence of segments matches both ``a`` and ``b`` in full: a DP over segments.

    ``reach[i][j]`` says some common prefix leaves ``a`` at segment ``i`` and ``b`` at ``j``. A
    ``**`` may match nothing (skip it) or absorb the segment the other side's glob takes; two
    globs advance together when they share a segment. Both ``**`` absorbing together is never
    needed. O(len(a) * len(b)) states, each with at most one segment-intersection test.
    """
    n, m = len(a), len(b)
    reach = [bytearray(m + 1) for _ in range(n + 1)]
    reach[0][0] = 1
    for i in range(n + 1):
        row = reach[i]
        for j in range(m + 1):
            if not row[j]:
                continue
            if i == n and j == m:
                return True
            star_a = i < n and a[i] == GLOBSTAR
            star_b = b_may_globstar and j < m and b[j] == GLOBSTAR
            if star_a:
                reach[i + 1][j] = 1
                if j < m and not star_b:
                    row[j + 1] = 1
            if star_b:
                row[j + 1] = 1
                if i < n and not star_a:
                    reach[i + 1][j] = 1
            if i < n and j < m and not star_a and not star_b and meet(a[i], b[j]):
                reach[i + 1][j + 1] = 1
    return False


def _with_trailing_globstar(segments: tuple[str, ...]) -> tuple[str, ...]:
    """Covering a path means matching it or an ancestor: the same as matching ``pattern/**``."""
    return segments if segments[-1] == GLOBSTAR else (*segments, GLOBSTAR)


@lru_cache(maxsize=16_384)
def _canonical(pattern: str) -> str:
    return normalise_pattern(pattern)


@lru_cache(maxsize=65_536)
def _canonical_path(path: str) -> str:
    return _normalise_path(path)


@lru_cache(maxsize=65_536)
def _overlap(a: str, b: str) -> bool:
    """Overlap of two canonical patterns; called with ``a <= b`` so the cache is symmetric."""
    if a == b:
        return True
    return _walk(
        _with_trailing_globstar(tuple(a.split("/"))),
        _with_trailing_globstar(tuple(b.split("/"))),
        b_may_globstar=True,
        meet=_segments_meet_sym,
    )


@lru_cache(maxsize=65_536)
def _covers(pattern: str, path: str) -> bool:
    return _walk(
        _with_trailing_globstar(tuple(pattern.split("/"))),
        tuple(path.split("/")),
        b_may_globstar=False,
        meet=_segment_matches,
    )


# ---------------------------------------------------------------------------------------------
# Public queries


def literal_prefix(pattern: str) -> str:
    """The leading whole segments of ``pattern`` that hold no glob syntax, joined by ``/``.

    ``src/api/*.py`` → ``src/api``; ``src/x.py`` → ``src/x.py``; ``*.py`` and ``**/x`` → ``""``.
    Every path a pattern covers starts with its literal prefix, so two patterns can overlap only
    if one's literal prefix equals, or is a segment-prefix of, the other's (``""`` is a
    segment-prefix of everything): a safe pre-filter before :func:`patterns_overlap`.
    """
    prefix: list[str] = []
    for segment in _canonical(pattern).split("/"):
        if not GLOB_CHARS.isdisjoint(segment):
            break
        prefix.append(segment)
    return "/".join(prefix)


def patterns_overlap(a: str, b: str) -> bool:
    """Whether some path is covered by both patterns (symmetric; memoised per pair)."""
    ca, cb = _canonical(a), _canonical(b)
    return _overlap(ca, cb) if ca <= cb else _overlap(cb, ca)


def covers(pattern: str, path: str) -> bool:
    """Whether ``pattern`` covers the literal repo-relative ``path`` (matches it or an ancestor).

    ``path`` is taken literally: a ``*`` or ``[`` in it is just a character of a file name.
    """
    return _covers(_canonical(pattern), _canonical_path(path))
