"""Markdown plans: headings and list items become a task tree.

* A heading is a task; its parent is the nearest heading above it with fewer ``#`` (so ``#``
  headings are epics, ``##`` their tasks; a plan may also start at ``##``).
* A list item (``-``, ``*``, ``+``, ``1.``) is a subtask of the heading above it, or of the list
  item it is indented under. ``- [ ]`` / ``- [x]`` checkboxes are dropped from the title.
* Under a task: ``Files: a.py, b.py`` lines (planned files), ``Acceptance: …`` lines, lines made
  only of markers, and any other text, which becomes the description. Under a list item these
  lines are indented past its bullet; unindented text belongs to the heading.
* Markers (:mod:`jetpack.plans.markers`) on a task's line or on a line of their own below it.
  ``skills``, ``labels`` and priority apply to the task's subtasks too (a subtask's own add to
  them, or override the priority); dependencies are inherited by the queue itself.
* Fenced code blocks are description text, never structure.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

from jetpack.errors import InvalidInput
from jetpack.plans.markers import Markers, split_markers
from jetpack.plans.model import Plan, PlanFormat, PlanItem, PlanProblem
from jetpack.reservations.patterns import normalise_pattern

_HEADING = re.compile(r"^(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_LIST_ITEM = re.compile(r"^(?P<indent>[ ]*)(?:[-*+]|\d{1,9}[.)])(?:[ ]+(?P<text>.*))?$")
_CHECKBOX = re.compile(r"^\[[ xX]\][ ]+")
_FENCE = re.compile(r"^[ ]*(?P<fence>`{3,}|~{3,})")
_LABELLED = re.compile(r"^(?:[-*+][ ]+)?[*_]{0,2}(?P<label>files|acceptance)[*_]{0,2}:[*_]{0,2}(?P<value>.*)$", re.I)
_PATHS = re.compile(r"`([^`]+)`|([^\s,`]+)")  # comma- or space-separated; `a path with spaces`


@dataclass
class _Draft:
    item: PlanItem
    indent: int  # a list item's bullet column; -1 for a heading
    description: list[str] = field(default_factory=list)
    acceptance: list[str] = field(default_factory=list)
    marked: set[str] = field(default_factory=set)  # fields a marker set, for inheritance


class _Reader:
    def __init__(self) -> None:
        self.roots: list[PlanItem] = []
        self.drafts: list[_Draft] = []
        self.problems: list[PlanProblem] = []
        self.headings: list[tuple[int, _Draft]] = []  # (level, heading), outermost first
        self.bullets: list[_Draft] = []  # open list items, outermost first
        self.last_text: _Draft | None = None  # where a blank line continues a paragraph

    def read(self, text: str) -> list[PlanItem]:
        fence: str | None = None
        fence_owner: _Draft | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.expandtabs(4).rstrip()
            indent = len(line) - len(line.lstrip(" "))
            opened = _FENCE.match(line)
            if fence is None and opened:
                fence, fence_owner = opened["fence"][0] * 3, self._owner(indent)
            elif fence is not None and line.strip().startswith(fence):
                fence = None
            elif fence is None:
                self._line(number, line, indent)
                continue
            if fence_owner is not None:  # a code block is description text of the task it starts under
                fence_owner.description.append(line)
                self.last_text = fence_owner
        for draft in self.drafts:
            self._finish(draft)
        _inherit(self.roots, self.drafts)
        return self.roots

    def _line(self, number: int, line: str, indent: int) -> None:
        if not line.strip():
            if self.last_text is not None:
                self.last_text.description.append("")
            return
        heading = _HEADING.match(line)
        bullet = _LIST_ITEM.match(line)
        labelled = _LABELLED.match(line.strip())
        if heading and indent == 0:
            self._heading(number, len(heading["hashes"]), heading["text"] or "")
        elif labelled:
            self._labelled(number, indent, labelled["label"].lower(), labelled["value"].strip())
        elif bullet:
            self._bullet(number, len(bullet["indent"]), bullet["text"] or "")
        else:
            self._describe(number, line, indent)

    def _new(self, number: int, text: str, indent: int, parent: _Draft | None) -> _Draft:
        title, markers = split_markers(_CHECKBOX.sub("", text.strip()))
        draft = _Draft(PlanItem(line=number, fields={"title": title}), indent)
        self._mark(number, draft, markers)
        (parent.item.children if parent else self.roots).append(draft.item)
        self.drafts.append(draft)
        self.last_text = None
        return draft

    def _heading(self, number: int, level: int, text: str) -> None:
        while self.headings and self.headings[-1][0] >= level:
            self.headings.pop()
        parent = self.headings[-1][1] if self.headings else None
        self.headings.append((level, self._new(number, text, -1, parent)))
        self.bullets = []

    def _bullet(self, number: int, indent: int, text: str) -> None:
        while self.bullets and self.bullets[-1].indent >= indent:
            self.bullets.pop()
        parent = self.bullets[-1] if self.bullets else (self.headings[-1][1] if self.headings else None)
        self.bullets.append(self._new(number, text, indent, parent))

    def _owner(self, indent: int) -> _Draft | None:
        """The task a line at this indent belongs to: the innermost list item it is indented
        under, else the current heading."""
        for draft in reversed(self.bullets):
            if draft.indent < indent:
                return draft
        return self.headings[-1][1] if self.headings else None

    def _labelled(self, number: int, indent: int, label: str, value: str) -> None:
        owner = self._owner(indent)
        if owner is None:
            self.problems.append(
                PlanProblem(number, f"this {label.capitalize()}: line comes before any task; put it under one")
            )
            return
        if label == "acceptance":
            owner.acceptance.append(value)
            return
        paths = [quoted or bare for quoted, bare in _PATHS.findall(value)]
        if not paths:
            self.problems.append(PlanProblem(number, "Files: line lists no files; write e.g. Files: src/app.py, web/*"))
        files: list[str] = owner.item.fields.setdefault("files", [])
        for path in paths:
            try:
                files.append(normalise_pattern(path))
            except InvalidInput as error:
                self.problems.append(PlanProblem(number, f"planned file: {error}"))

    def _describe(self, number: int, line: str, indent: int) -> None:
        owner = self._owner(indent)
        if owner is None:
            return  # text before the first task: the plan's preamble
        rest, markers = split_markers(line)
        if markers.count and not rest:
            self._mark(number, owner, markers)
            return
        owner.description.append(line)
        self.last_text = owner

    def _mark(self, number: int, draft: _Draft, markers: Markers) -> None:
        self.problems.extend(PlanProblem(number, problem) for problem in markers.problems)
        fields = draft.item.fields
        draft.item.depends.extend((reference, number) for reference in markers.depends)
        for name in ("skills", "labels"):
            values = getattr(markers, name)
            if values:
                fields.setdefault(name, []).extend(values)
        for name in ("estimate_minutes", "priority", "ref"):
            value = getattr(markers, name)
            if value is not None:
                if name in draft.marked:
                    self.problems.append(PlanProblem(number, f"a second {name.split('_')[0]} marker for this task"))
                fields[name] = value
                draft.marked.add(name)

    def _finish(self, draft: _Draft) -> None:
        description = textwrap.dedent("\n".join(draft.description)).strip()
        if description:
            draft.item.fields["description"] = re.sub(r"\n{3,}", "\n\n", description)
        if draft.acceptance:
            draft.item.fields["acceptance"] = "\n".join(draft.acceptance)


def _inherit(roots: list[PlanItem], drafts: list[_Draft]) -> None:
    """Skills, labels and priority written on a task apply to its subtasks as well."""
    marked = {id(d.item): d.marked for d in drafts}

    def visit(item: PlanItem, skills: list[str], labels: list[str], priority: int | None) -> None:
        fields = item.fields
        skills = list(dict.fromkeys([*skills, *fields.get("skills", [])]))
        labels = list(dict.fromkeys([*labels, *fields.get("labels", [])]))
        if "priority" in marked[id(item)]:
            priority = fields["priority"]
        for name, values in (("skills", skills), ("labels", labels)):
            if values:
                fields[name] = values
        if priority is not None:
            fields["priority"] = priority
        for child in item.children:
            visit(child, skills, labels, priority)

    for root in roots:
        visit(root, [], [], None)


def read_markdown(text: str, source: str = "<plan>") -> Plan:
    reader = _Reader()
    roots = reader.read(text)
    return Plan(source=source, format=PlanFormat.MARKDOWN, roots=roots, problems=reader.problems)
