"""The shape of a plan between reading and loading: items with the line they came from.

Readers (markdown, JSON, YAML) turn text into :class:`PlanItem` trees without judging them;
:mod:`jetpack.plans.resolve` checks the whole plan at once and reports every problem with its
line, so a plan is fixed in one pass and never half loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from jetpack.errors import InvalidInput


class PlanFormat(StrEnum):
    MARKDOWN = "markdown"
    JSON = "json"
    YAML = "yaml"


SUFFIXES = {
    ".md": PlanFormat.MARKDOWN,
    ".markdown": PlanFormat.MARKDOWN,
    ".json": PlanFormat.JSON,
    ".yaml": PlanFormat.YAML,
    ".yml": PlanFormat.YAML,
}


@dataclass
class PlanItem:
    """One task as written. ``fields`` are NewTask fields (title, files, …) still unchecked;
    ``depends`` are references as written (a ref, a title, or an existing task id) with their line."""

    line: int
    fields: dict[str, Any]
    depends: list[tuple[str, int]] = field(default_factory=list)
    children: list[PlanItem] = field(default_factory=list)

    @property
    def title(self) -> str:
        return str(self.fields.get("title") or "")


@dataclass(frozen=True)
class PlanProblem:
    line: int
    message: str


@dataclass
class Plan:
    """A plan as read: its items, and the problems the reader already found."""

    source: str
    format: PlanFormat
    roots: list[PlanItem]
    problems: list[PlanProblem] = field(default_factory=list)


class PlanError(InvalidInput):
    """A plan that cannot be loaded; every problem found, each with its line. Nothing was created."""

    def __init__(self, source: str, problems: list[PlanProblem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: p.line)
        shown = "\n".join(f"  {source}:{p.line}: {p.message}" for p in self.problems)
        count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        super().__init__(f"{source} has {count}; nothing was created:\n{shown}")


def problems_at(source: str, line: int, message: str) -> PlanError:
    return PlanError(source, [PlanProblem(line, message)])
