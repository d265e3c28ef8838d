"""Inline markers in a markdown plan: ``[depends: …]``, ``[skills: …]``, ``[p1]``, ``[est: 30m]`` …

A marker is a bracketed ``key: value`` (or ``p0``…``p4``) on a heading or list item line, or on a
line of its own under it. It is removed from the title. Brackets that are not markers stay in the
title (``[beta]``, links ``[text](url)``); ``\\[`` keeps a literal ``[key: value]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ESCAPED = "\x00"
_KEYED = re.compile(r"\[\s*(?P<key>[A-Za-z][A-Za-z _-]*?)\s*:\s*(?P<value>[^\]]*)\](?!\()")
_PRIORITY = re.compile(r"\[\s*[pP](?P<level>\d+)\s*\](?!\()")
_KEYS = {
    "depends": "depends",
    "depends on": "depends",
    "after": "depends",
    "skills": "skills",
    "skill": "skills",
    "labels": "labels",
    "label": "labels",
    "est": "estimate",
    "estimate": "estimate",
    "ref": "ref",
    "priority": "priority",
}
_DURATION = re.compile(
    r"^(?:(?P<hours>\d+(?:\.\d+)?)\s*h(?:ours?|rs?)?)?\s*(?:(?P<minutes>\d+)\s*m(?:in(?:utes?|s)?)?)?$",
    re.IGNORECASE,
)
_REF = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Markers:
    depends: list[str] = field(default_factory=list)
    skills: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    estimate_minutes: int | None = None
    priority: int | None = None
    ref: str | None = None
    problems: list[str] = field(default_factory=list)
    count: int = 0


def parse_estimate(text: str) -> int:
    """``30m``, ``2h``, ``1h30m``, ``1.5h``, ``45`` (minutes) → minutes."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    match = _DURATION.match(value)
    if not value or not match or not (match["hours"] or match["minutes"]):
        raise ValueError(f"estimate {text.strip()!r} is not a duration; write e.g. 30m, 2h or 1h30m")
    return round(float(match["hours"] or 0) * 60) + int(match["minutes"] or 0)


def split_markers(text: str) -> tuple[str, Markers]:
    """The text without its markers (whitespace collapsed), and the markers found in it."""
    markers = Markers()
    protected = text.replace("\\[", _ESCAPED)

    def keyed(match: re.Match[str]) -> str:
        key = " ".join(match["key"].lower().replace("_", " ").replace("-", " ").split())
        _apply(markers, key, match["value"].strip(), match[0])
        return " "

    def priority(match: re.Match[str]) -> str:
        _apply(markers, "priority", match["level"], match[0])
        return " "

    stripped = _PRIORITY.sub(priority, _KEYED.sub(keyed, protected))
    return " ".join(stripped.replace(_ESCAPED, "[").split()), markers


def _apply(markers: Markers, key: str, value: str, written: str) -> None:
    markers.count += 1
    kind = _KEYS.get(key)
    if kind is None:
        known = "depends, skills, labels, est, ref, priority, p0…p4"
        markers.problems.append(f"unknown marker {written}; known markers: {known} (write \\[ for a literal bracket)")
        return
    items = [item.strip() for item in value.split(",") if item.strip()]
    if kind in ("depends", "skills", "labels"):
        if not items:
            markers.problems.append(f"marker {written} is empty; list one or more names separated by commas")
        getattr(markers, kind).extend(items)
    elif kind == "estimate":
        _once(markers, "estimate_minutes", written)
        try:
            markers.estimate_minutes = parse_estimate(value)
        except ValueError as error:
            markers.problems.append(str(error))
    elif kind == "priority":
        _once(markers, "priority", written)
        level = value.lower().removeprefix("p")
        if not level.isdigit() or not 0 <= int(level) <= 4:
            markers.problems.append(f"priority {written} is out of range; use p0 (highest) … p4 (lowest)")
        else:
            markers.priority = int(level)
    else:
        _once(markers, "ref", written)
        if not _REF.match(value):
            markers.problems.append(
                f"ref {written} must be a short name: a letter, then letters, digits, '_', '.' or '-'"
            )
        markers.ref = value


def _once(markers: Markers, attribute: str, written: str) -> None:
    if getattr(markers, attribute) is not None:
        markers.problems.append(f"marker {written} repeats a marker already given for this task; keep one")
