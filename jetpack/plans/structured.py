"""JSON and YAML plans: the shape of the ``create_tasks`` tool (and ``jetpack task add --from-file``).

A list of tasks, or ``{"tasks": [...]}``; each task has NewTask's fields, ``children`` nest, and
``depends_on`` names a ``ref`` or title in the plan, or an existing task id. Both readers remember
the line where each task object starts, so problems are reported by line like markdown's.
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import json.scanner
from typing import Any

import yaml

from jetpack.plans.model import Plan, PlanFormat, PlanItem, PlanProblem, problems_at


class _Located(dict[str, Any]):
    """A JSON or YAML object that knows the line it starts on."""

    line = 0


def _json_objects(text: str, source: str) -> Any:
    starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]
    decoder = json.JSONDecoder()

    def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[_Located, int]:
        value, end = json.decoder.JSONObject(s_and_end, *args)  # type: ignore[attr-defined]
        located = _Located(value)
        located.line = bisect.bisect_right(starts, s_and_end[1] - 1)
        return located, end

    # The pure-Python scanner calls the decoder's parse_object for every object (the C one does not).
    decoder.parse_object = parse_object  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as error:
        raise problems_at(source, error.lineno, f"not valid JSON: {error.msg} (column {error.colno})") from None


class _LineLoader(yaml.SafeLoader):
    pass


def _yaml_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Located:
    loader.flatten_mapping(node)
    located = _Located({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})
    located.line = node.start_mark.line + 1
    return located


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _yaml_mapping)


def _yaml_objects(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise problems_at(source, line, f"not valid YAML: {error.problem or error}") from None
    except yaml.YAMLError as error:
        raise problems_at(source, 1, f"not valid YAML: {error}") from None


def read_structured(text: str, fmt: PlanFormat, source: str = "<plan>") -> Plan:
    data = _json_objects(text, source) if fmt is PlanFormat.JSON else _yaml_objects(text, source)
    problems: list[PlanProblem] = []
    if isinstance(data, dict) and "tasks" in data:
        extra = sorted(set(data) - {"tasks"})
        if extra:
            problems.append(PlanProblem(_line(data), f"unknown top-level key(s) {extra}; a plan holds only 'tasks'"))
        data = data["tasks"]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        line = _line(data)
        problems.append(PlanProblem(line, "a plan is a non-empty list of tasks, or an object with a 'tasks' list"))
        return Plan(source=source, format=fmt, roots=[], problems=problems)
    roots = _items(data, 1, problems)
    return Plan(source=source, format=fmt, roots=roots, problems=problems)


def _line(value: Any, default: int = 1) -> int:
    return value.line if isinstance(value, _Located) else default


def _items(raw: list[Any], line: int, problems: list[PlanProblem]) -> list[PlanItem]:
    items = []
    for value in raw:
        if not isinstance(value, dict):
            problems.append(PlanProblem(line, f"a task must be an object with a title, not {value!r:.60}"))
            continue
        items.append(_item(value, problems))
    return items


def _item(raw: dict[str, Any], problems: list[PlanProblem]) -> PlanItem:
    line = _line(raw)
    fields = {k: v for k, v in raw.items() if k not in ("children", "depends_on", "parent")}
    if "parent" in raw:
        problems.append(
            PlanProblem(line, "'parent' is not used in plans: nest the task in its parent's 'children' instead")
        )
    depends = raw.get("depends_on", [])
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        problems.append(PlanProblem(line, "depends_on must be a list of refs, titles or task ids"))
        depends = []
    children = raw.get("children", [])
    if not isinstance(children, list):
        problems.append(PlanProblem(line, "children must be a list of tasks"))
        children = []
    return PlanItem(
        line=line, fields=fields, depends=[(d, line) for d in depends], children=_items(children, line, problems)
    )
