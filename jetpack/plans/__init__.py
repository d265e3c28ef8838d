"""Plans: a whole task tree written as markdown (or JSON/YAML), checked, then loaded in one batch.

``parse_plan_file`` reads and checks (every problem with its line, nothing created);
``preview_plan`` shows the tree with the ids it will get and the critical path;
``load_plan`` creates it through ``create_tasks``, all or nothing. See docs/plans.md.
"""

from jetpack.plans.loading import (
    SAMPLE_PLAN,
    check_existing_dependencies,
    format_of,
    load_plan,
    load_plan_file,
    parse_plan,
    parse_plan_file,
    read_plan_text,
)
from jetpack.plans.model import Plan, PlanError, PlanFormat, PlanItem, PlanProblem
from jetpack.plans.preview import CriticalPath, PlanPreview, PlanTask, critical_path, preview_plan
from jetpack.plans.resolve import PlanNode, ResolvedPlan, resolve_plan

__all__ = [
    "SAMPLE_PLAN",
    "CriticalPath",
    "Plan",
    "PlanError",
    "PlanFormat",
    "PlanItem",
    "PlanNode",
    "PlanPreview",
    "PlanProblem",
    "PlanTask",
    "ResolvedPlan",
    "check_existing_dependencies",
    "critical_path",
    "format_of",
    "load_plan",
    "load_plan_file",
    "parse_plan",
    "parse_plan_file",
    "preview_plan",
    "read_plan_text",
    "resolve_plan",
]
