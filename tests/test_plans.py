"""The plan loader: markdown, JSON and YAML plans become the expected task tree, files and
dependencies; malformed plans are refused with line-numbered problems and create nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from jetpack.actor import Actor
from jetpack.cli.main import main
from jetpack.config import TaskSettings
from jetpack.plans import (
    SAMPLE_PLAN,
    PlanError,
    PlanFormat,
    load_plan,
    load_plan_file,
    parse_plan,
    parse_plan_file,
    preview_plan,
)
from jetpack.tasks import NewTask, QueueContext, count_by_state, create_tasks, get_task

PLAN = """\
# Shop

The storefront and its API.

## Backend [skills: python] [p1]

- Data model [ref: model] [est: 1h]
  Files: shop/models.py, `shop/migrations/0001 initial.sql`
  Tables for products and orders.
- Product API [depends: model] [est: 45m]
  Files: shop/api/products.py
  Acceptance: GET /products lists them
  - Pagination [skills: sql] [est: 20m] [p0]
    Files: shop/api/pages.py

## Frontend [depends: Backend]

- [ ] Product page [est: 1h30m] [labels: ui]
  Files: web/product.html, web/product.js
  ```js
  // example: fetch("/products")
  ```
- [x] Cart \\[beta] [depends: product page]
  Files: web/cart.js

## Release
[depends: Frontend, jp-zz99]
"""


def test_markdown_plan_gives_the_expected_tree_files_and_dependencies() -> None:
    plan = parse_plan(PLAN, source="shop.md")
    preview = preview_plan(plan)
    got = [
        (t.id, t.title, t.files, t.depends_on, t.skills, t.priority, t.estimate_minutes, t.line) for t in preview.tasks
    ]
    assert got == [
        ("jp-?1", "Shop", [], [], [], 2, None, 1),
        ("jp-?1.1", "Backend", [], [], ["python"], 1, None, 5),
        ("jp-?1.1.1", "Data model", ["shop/models.py", "shop/migrations/0001 initial.sql"], [], ["python"], 1, 60, 7),
        ("jp-?1.1.2", "Product API", ["shop/api/products.py"], ["jp-?1.1.1"], ["python"], 1, 45, 10),
        ("jp-?1.1.2.1", "Pagination", ["shop/api/pages.py"], [], ["python", "sql"], 0, 20, 13),
        ("jp-?1.2", "Frontend", [], ["jp-?1.1"], [], 2, None, 16),
        ("jp-?1.2.1", "Product page", ["web/product.html", "web/product.js"], [], [], 2, 90, 18),
        ("jp-?1.2.2", "Cart [beta]", ["web/cart.js"], ["jp-?1.2.1"], [], 2, None, 23),
        ("jp-?1.3", "Release", [], ["jp-?1.2", "jp-zz99"], [], 2, None, 26),
    ]
    nodes = {n.title: n for n in plan.nodes}
    assert nodes["Shop"].spec.description == "The storefront and its API."
    assert nodes["Data model"].spec.description == "Tables for products and orders."
    assert nodes["Product API"].spec.acceptance == "GET /products lists them"
    assert nodes["Product page"].spec.labels == ["ui"]
    assert nodes["Product page"].spec.description == '```js\n// example: fetch("/products")\n```'
    assert plan.existing_ids() == ["jp-zz99"]


def test_critical_path_follows_estimates_and_inherited_dependencies() -> None:
    preview = preview_plan(parse_plan(PLAN))
    # Frontend waits for all of Backend's leaves; a leaf without an estimate weighs the median of the
    # leaves' estimates (60, 20, 90: 60m), and a parent's own estimate (Product API) does not count.
    assert preview.critical_path.ids == ["jp-?1.1.1", "jp-?1.1.2.1", "jp-?1.2.1", "jp-?1.2.2", "jp-?1.3"]
    assert preview.critical_path.minutes == 60 + 20 + 90 + 60 + 60


def test_critical_path_counts_tasks_when_nothing_is_estimated() -> None:
    preview = preview_plan(parse_plan("## A\n## B [depends: A]\n- b1\n- b2 [depends: b1]\n## C\n"))
    assert preview.critical_path.titles == ["A", "b1", "b2"]
    assert preview.critical_path.minutes is None
    assert preview.critical_path.tasks == 3


def test_the_batch_for_create_tasks_uses_refs_for_dependencies() -> None:
    batch = parse_plan("## A [ref: a]\n## B [depends: a, A]\n- b1 [depends: C]\n## C\n").new_tasks()
    assert [t.title for t in batch] == ["A", "B", "C"]
    assert batch[1].depends_on == ["a"]
    assert batch[1].children[0].depends_on == ["#4"]
    assert batch[2].ref == "#4"


@pytest.mark.both_adapters
def test_loading_creates_the_tree_with_its_dependencies_in_one_batch(queue: QueueContext, alice: Actor) -> None:
    existing = create_tasks(queue, alice, [NewTask(title="Legal review")])[0].id
    loaded = load_plan(queue, alice, parse_plan(PLAN.replace("jp-zz99", existing)))
    ids = {t.title: t.id for t in loaded.tasks}
    assert loaded.created and loaded.count == 9
    assert ids["Data model"] == ids["Backend"] + ".1" and ids["Pagination"] == ids["Product API"] + ".1"
    detail = get_task(queue, ids["Release"])
    assert sorted(d.id for d in detail.depends_on) == sorted([ids["Frontend"], existing])
    assert [d.id for d in get_task(queue, ids["Cart [beta]"]).depends_on] == [ids["Product page"]]
    assert get_task(queue, ids["Product page"]).task.files == ["web/product.html", "web/product.js"]
    ready = {t.title for t in loaded.tasks if t.state == "ready"}
    assert ready == {"Data model"}  # Pagination waits for the model; Frontend for the whole Backend


def test_the_shipped_sample_plan_loads_with_files_on_every_leaf(queue: QueueContext, alice: Actor) -> None:
    loaded = load_plan_file(queue, alice, SAMPLE_PLAN)
    leaves = [t for t in loaded.tasks if not any(o.parent_id == t.id for o in loaded.tasks)]
    assert 12 <= len(leaves) <= 20
    assert all(t.files for t in leaves) and all(t.estimate_minutes for t in leaves)
    files = [f for t in leaves for f in t.files]
    assert len(files) == len(set(files)), "each file belongs to one task, so workers never share one"
    assert loaded.dependencies >= 10
    assert {t.title for t in loaded.tasks if t.state == "ready"} == {"Project skeleton", "Page layout and styles"}
    assert loaded.critical_path.minutes == 235


def test_json_and_yaml_plans_load_like_create_tasks_batches() -> None:
    tasks = [
        {
            "title": "API",
            "ref": "api",
            "files": ["src/api.py"],
            "children": [{"title": "Auth", "estimate_minutes": 30}],
        },
        {"title": "Docs", "depends_on": ["api"], "skills": ["Writing"]},
    ]
    from_json = parse_plan(json.dumps({"tasks": tasks}, indent=2), PlanFormat.JSON)
    yaml_text = """\
- title: API
  ref: api
  files: [src/api.py]
  children:
    - title: Auth
      estimate_minutes: 30
- title: Docs
  depends_on: [API]
  skills: [Writing]
"""
    from_yaml = parse_plan(yaml_text, PlanFormat.YAML)
    for plan in (from_json, from_yaml):
        rows = [(t.id, t.title, t.files, t.depends_on, t.skills) for t in preview_plan(plan).tasks]
        assert rows == [
            ("jp-?1", "API", ["src/api.py"], [], []),
            ("jp-?1.1", "Auth", [], [], []),
            ("jp-?2", "Docs", [], ["jp-?1"], ["writing"]),
        ]
    assert [n.line for n in from_yaml.nodes] == [1, 5, 7]


def _problems(text: str, fmt: PlanFormat = PlanFormat.MARKDOWN, **options: int) -> list[tuple[int, str]]:
    with pytest.raises(PlanError) as caught:
        parse_plan(text, fmt, source="plan", **options)  # type: ignore[arg-type]
    return [(p.line, p.message) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("## A\n- a1 [depends: Nope]\n", 2, "unknown dependency 'Nope'"),
        ("## Build API\n## Docs\n[depends: Bild API]\n", 3, "did you mean 'Build API'"),
        ("## A [depends: B]\n## B [depends: A]\n", 1, "cycle: 'A' (line 1) waits for 'B' (line 2); 'B' (line 2) waits"),
        (
            "## Parent\n- child [depends: Parent]\n",
            2,
            "'child' (line 2) waits for 'Parent' (line 1), which contains it",
        ),
        ("## Parent [depends: child]\n- child\n", 1, "waits for 'child' (line 2), one of its own subtasks"),
        ("## A [depends: A]\n", 1, "'A' depends on itself"),
        ("# 1\n## 2\n- 3\n  - 4\n    - 5\n", 5, "'5' would be at depth 5, beyond tasks.max_depth (4)"),
        ("## Fine\n- [p1]\n", 2, "empty title"),
        ("## \n", 1, "empty title"),
        ("## A [owner: bob]\n", 1, "unknown marker [owner: bob]"),
        ("## A [p7]\n", 1, "priority [p7] is out of range"),
        ("## A [est: soon]\n", 1, "estimate 'soon' is not a duration"),
        ("## A [skills: ]\n", 1, "marker [skills: ] is empty"),
        ("## A [est: 1h] [est: 2h]\n", 1, "repeats a marker"),
        ("## A\n- B [ref: x]\n- C [ref: x]\n", 3, "ref 'x' is already used on line 2"),
        ("## A\n- B [ref: jp-a3f8]\n", 2, "looks like a task id"),
        ("## Same\n## Same\n## C [depends: Same]\n", 3, "ambiguous: tasks on lines 1, 2"),
        ("## A\nFiles: ../outside.py\n", 2, "outside the repository"),
        ("Files: a.py\n## A\n", 1, "comes before any task"),
        ("## A\n- B [skills: no spaces]\n", 2, "invalid task: skills"),
        ("intro text only\n", 1, "the plan has no tasks"),
    ],
)
def test_malformed_markdown_gets_a_line_numbered_problem(text: str, line: int, fragment: str) -> None:
    problems = _problems(text)
    assert any(at == line and fragment in message for at, message in problems), problems


def test_every_problem_is_reported_at_once_with_the_file_and_line() -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan("## A [p9]\n- b [depends: zzz]\n- \n", source="plan.md")
    message = str(caught.value)
    assert message.startswith("plan.md has 3 problems; nothing was created:")
    assert "plan.md:1: priority [p9]" in message
    assert "plan.md:2: unknown dependency 'zzz'" in message
    assert "plan.md:3: empty title" in message


def test_depth_follows_the_configured_maximum() -> None:
    assert _problems("# A\n## B\n- c\n", max_depth=2) == [
        (
            3,
            "'c' would be at depth 3, beyond tasks.max_depth (2): lift it (and its subtasks) a level, "
            "fold it into its parent's description, or raise tasks.max_depth in .jetpack/config.toml",
        )
    ]


@pytest.mark.parametrize(
    ("fmt", "text", "line", "fragment"),
    [
        (
            PlanFormat.JSON,
            '[\n  {"title": "A"},\n  {"title": "B",\n   "depends_on": ["C"]}\n]',
            3,
            "unknown dependency",
        ),
        (PlanFormat.JSON, '[\n  {"title": "A",\n   "colour": "red"}\n]', 2, "colour: Extra inputs are not permitted"),
        (PlanFormat.JSON, '[\n  {"title": "A",}\n]', 2, "not valid JSON"),
        (PlanFormat.JSON, '[{"title": ""}]', 1, "empty title"),
        (
            PlanFormat.YAML,
            "- title: A\n  children:\n    - title: B\n      depends_on: [A]\n",
            3,
            "'B' (line 3) waits for 'A' (line 1)",
        ),
        (PlanFormat.YAML, "- title: A\n  parent: jp-a3f8\n", 1, "'parent' is not used in plans"),
        (PlanFormat.YAML, "- title: A\n   bad: indent\n", 2, "not valid YAML"),
        (PlanFormat.YAML, "- title: A\n- just a string\n", 1, "a task must be an object"),
    ],
)
def test_malformed_json_and_yaml_get_line_numbered_problems(
    fmt: PlanFormat, text: str, line: int, fragment: str
) -> None:
    problems = _problems(text, fmt)
    assert any(at == line and fragment in message for at, message in problems), problems


def test_a_refused_plan_creates_nothing(queue: QueueContext, alice: Actor) -> None:
    plan = parse_plan("## A\n- a1\n## B [depends: jp-zz99]\n")  # well-formed, but jp-zz99 does not exist
    with pytest.raises(PlanError) as caught:
        load_plan(queue, alice, plan)
    assert [(p.line, p.message.split(";")[0]) for p in caught.value.problems] == [
        (3, "no task jp-zz99 in this project")
    ]
    assert sum(count_by_state(queue).values()) == 0


def test_markers_leave_other_brackets_in_the_title() -> None:
    plan = parse_plan("## Read [the docs](https://example.com) [beta] \\[depends: x] [depends: Other]\n## Other\n")
    assert plan.nodes[0].title == "Read [the docs](https://example.com) [beta] [depends: x]"
    assert plan.nodes[0].blockers == [1]


def test_files_lines_and_descriptions_belong_to_the_item_they_are_indented_under() -> None:
    plan = parse_plan(
        "## Section\nAbout the section.\n"
        "- one\n  Files: a.py b.py\n  - two\n    Files: c.py\n  More on one.\n"
        "Files: s.py\n"
    )
    files = {n.title: n.spec.files for n in plan.nodes}
    assert files == {"Section": ["s.py"], "one": ["a.py", "b.py"], "two": ["c.py"]}
    descriptions = {n.title: n.spec.description for n in plan.nodes}
    assert descriptions == {"Section": "About the section.", "one": "More on one.", "two": ""}


def test_plan_files_are_read_by_their_suffix(tmp_path: Path) -> None:
    path = tmp_path / "plan.yml"
    path.write_text("tasks:\n  - title: Only\n")
    assert [n.title for n in parse_plan_file(path).nodes] == ["Only"]
    with pytest.raises(Exception, match="cannot tell the plan's format"):
        parse_plan_file(tmp_path / "plan.txt")


def _cli(project: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--project", str(project), *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_dry_run_shows_the_tree_and_critical_path_and_creates_nothing(project: Path) -> None:
    (project / ".jetpack").mkdir()
    code, out, _ = _cli(project, "load", str(SAMPLE_PLAN), "--dry-run")
    assert code == 0
    assert "would create 19 tasks (14 to work on, 15 dependencies); nothing was created" in out
    assert "jp-?1.1.5.3        Server and routing  [~25m]" in out
    assert "after: jp-?1.1.2 (Configuration), jp-?1.1.5.1 (Notes endpoints), jp-?1.1.5.2 (Search endpoint)" in out
    assert "Critical path (8 tasks, 3h 55m):" in out
    code, out, _ = _cli(project, "task", "list", "--all", "--json")
    assert json.loads(out)["tasks"] == []


def test_cli_load_creates_the_plan_and_reports_problems_by_line(project: Path) -> None:
    (project / ".jetpack").mkdir()
    code, out, _ = _cli(project, "load", str(SAMPLE_PLAN), "--json")
    assert code == 0
    loaded = json.loads(out)
    assert loaded["created"] is True and loaded["count"] == 19
    assert not any("?" in t["id"] for t in loaded["tasks"])
    bad = project / "bad.md"
    bad.write_text("## A\n- a1 [depends: nothing here]\n")
    code, _, err = _cli(project, "load", str(bad))
    assert code == 1
    assert f"{bad}:2: unknown dependency 'nothing here'" in err


def test_tasks_settings_shape_the_placeholders() -> None:
    plan = parse_plan("## A\n", id_prefix=TaskSettings(id_prefix="web").id_prefix)
    assert preview_plan(plan).tasks[0].id == "web-?1"


def test_the_dry_run_critical_path_is_the_one_the_swarm_graph_finds_once_loaded(
    queue: QueueContext, alice: Actor
) -> None:
    graph = pytest.importorskip("jetpack.swarm.graph")
    loaded = load_plan_file(queue, alice, SAMPLE_PLAN)
    assert graph.task_graph(queue.store).critical_path() == loaded.critical_path.ids
