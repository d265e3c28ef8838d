"""Reading a plan file and loading it into the queue through ``create_tasks`` (all or nothing)."""

from __future__ import annotations

from pathlib import Path

from jetpack.actor import Actor
from jetpack.errors import InvalidInput
from jetpack.plans.markdown import read_markdown
from jetpack.plans.model import SUFFIXES, Plan, PlanError, PlanFormat, PlanProblem
from jetpack.plans.preview import PlanPreview, preview_plan
from jetpack.plans.resolve import ResolvedPlan, resolve_plan
from jetpack.plans.structured import read_structured
from jetpack.tasks import QueueContext, create_tasks

SAMPLE_PLAN = Path(__file__).with_name("sample_plan.md")


def read_plan_text(text: str, fmt: PlanFormat = PlanFormat.MARKDOWN, source: str = "<plan>") -> Plan:
    if fmt is PlanFormat.MARKDOWN:
        return read_markdown(text, source)
    return read_structured(text, fmt, source)


def format_of(path: Path) -> PlanFormat:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(SUFFIXES))
        raise InvalidInput(f"{path}: cannot tell the plan's format from its name; use {known}, or pass --format")
    return fmt


def parse_plan(
    text: str,
    fmt: PlanFormat = PlanFormat.MARKDOWN,
    *,
    source: str = "<plan>",
    max_depth: int = 4,
    id_prefix: str = "jp",
) -> ResolvedPlan:
    """Read and check a plan; raise :class:`PlanError` (every problem, with its line) if it cannot load."""
    return resolve_plan(read_plan_text(text, fmt, source), max_depth=max_depth, id_prefix=id_prefix)


def parse_plan_file(
    path: Path, fmt: PlanFormat | None = None, *, max_depth: int = 4, id_prefix: str = "jp"
) -> ResolvedPlan:
    chosen = fmt or format_of(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read the plan {path}: {error}") from None
    return parse_plan(text, chosen, source=str(path), max_depth=max_depth, id_prefix=id_prefix)


def check_existing_dependencies(queue: QueueContext, plan: ResolvedPlan) -> None:
    """Existing task ids the plan depends on must exist: reported by line, like other problems."""
    wanted = plan.existing_ids()
    missing = set(wanted) - set(queue.rows_by_id(wanted, "id"))
    problems = [
        PlanProblem(n.line, f"no task {task_id} in this project; depend on an existing id or a task of the plan")
        for n in plan.nodes
        for task_id in n.existing
        if task_id in missing
    ]
    if problems:
        raise PlanError(plan.source, problems)


def load_plan(queue: QueueContext, actor: Actor, plan: ResolvedPlan) -> PlanPreview:
    """Create every task of the plan in one ``create_tasks`` batch; the preview carries the real ids."""
    check_existing_dependencies(queue, plan)
    created = create_tasks(queue, actor, plan.new_tasks())
    return preview_plan(plan, [c.id for c in created], [c.state.value for c in created])


def load_plan_file(queue: QueueContext, actor: Actor, path: Path, fmt: PlanFormat | None = None) -> PlanPreview:
    """Read, check and load a plan file with the queue's settings (max depth, id prefix)."""
    plan = parse_plan_file(path, fmt, max_depth=queue.settings.max_depth, id_prefix=queue.settings.id_prefix)
    return load_plan(queue, actor, plan)
