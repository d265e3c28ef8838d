"""Git, as the harness uses it: what a run changed, per-worker worktrees, and committing a task's files.

What an agent changed is read from git, never from what it printed: the commits made during its run
whose message names the task, plus the files whose working-tree state changed while it ran (Jetpack's
own ``.jetpack/`` excluded). Several agents may share one working tree, so the comparison is against
a snapshot taken when the run started, not against HEAD alone.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jetpack.config import STATE_DIR

GIT_TIMEOUT = 60.0
# Concurrent git commands in one working tree race for .git/index.lock; the loser tries again.
LOCK_RETRIES = 300
LOCK_PAUSE = 0.1


class GitError(Exception):
    pass


def git(workdir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git in ``workdir``; retry while another process holds the index lock."""
    for _ in range(LOCK_RETRIES):
        done = subprocess.run(
            ["git", *args],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            env=env,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout
        if "index.lock" not in done.stderr:
            raise GitError(f"git {' '.join(args)} failed in {workdir}: {done.stderr.strip() or done.stdout.strip()}")
        time.sleep(LOCK_PAUSE)
    raise GitError(f"git {' '.join(args)}: .git/index.lock stayed taken in {workdir}")


def is_repository(path: Path) -> bool:
    try:
        return git(path, "rev-parse", "--is-inside-work-tree").strip() == "true"
    except (GitError, OSError):
        return False


def head(workdir: Path) -> str | None:
    try:
        return git(workdir, "rev-parse", "--verify", "--quiet", "HEAD").strip() or None
    except GitError:
        return None  # no commit yet


@dataclass(frozen=True)
class TreeSnapshot:
    """HEAD and the state of every changed or untracked file (``.jetpack/`` excluded) at one moment."""

    head: str | None
    files: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # path -> (status, mtime_ns, size)


def snapshot(workdir: Path) -> TreeSnapshot:
    # --no-optional-locks: a status running beside the agents must never write the index they stage in.
    out = git(
        workdir,
        "--no-optional-locks",
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--",
        ".",
        f":(exclude){STATE_DIR}",
    )
    files: dict[str, tuple[str, int, int]] = {}
    entries = out.split("\0")
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        status, path = entry[:2], entry[3:]
        if status[0] in "RC":
            index += 1  # a rename is followed by its source path
        try:
            stat = (workdir / path).stat()
            files[path] = (status, stat.st_mtime_ns, stat.st_size)
        except OSError:
            files[path] = (status, 0, -1)  # deleted
    return TreeSnapshot(head(workdir), files)


def changes_since(workdir: Path, before: TreeSnapshot, task_id: str) -> list[str]:
    """Files the run changed: in its commits (those naming the task) and in the working tree."""
    after = snapshot(workdir)
    changed = {path for path, state in after.files.items() if before.files.get(path) != state}
    if after.head and after.head != before.head:
        span = f"{before.head}..{after.head}" if before.head else after.head
        out = git(workdir, "log", "--format=%x00%s", "--name-only", span)
        for block in out.split("\0")[1:]:
            subject, _, names = block.partition("\n")
            if task_id in subject:
                changed |= {n for n in names.splitlines() if n.strip()}
    return sorted(changed)


def commit_files(workdir: Path, paths: Sequence[str], message: str, env: dict[str, str] | None = None) -> str:
    """Commit exactly ``paths`` (whatever else is staged stays out) and return the commit id.

    Workers sharing a working tree take turns (a lock file in its git directory): a partial commit
    reads the index before it locks it, so two at once can lose the other's ``git add``."""
    git_dir = Path(git(workdir, "rev-parse", "--absolute-git-dir").strip())
    with (git_dir / "jetpack-commit.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        git(workdir, "add", "--", *paths, env=env)
        git(workdir, "commit", "--quiet", "-m", message, "--only", "--", *paths, env=env)
        return git(workdir, "rev-parse", "HEAD", env=env).strip()


def ensure_worktree(project: Path, agent: str) -> tuple[Path, str]:
    """The worker's own worktree (``.jetpack/worktrees/AGENT``) on branch ``jetpack/AGENT``, made from
    the project's HEAD on first use and reused afterwards."""
    path = project / STATE_DIR / "worktrees" / agent
    branch = f"jetpack/{agent}"
    if (path / ".git").exists():
        return path, branch
    if head(project) is None:
        raise GitError(f"{project} has no commit yet; --worktrees branches off HEAD, so commit something first")
    path.parent.mkdir(parents=True, exist_ok=True)
    git(project, "worktree", "add", "-B", branch, str(path), "HEAD")
    return path, branch


def agent_git_env(agent: str) -> dict[str, str]:
    """Commits made by a scripted worker carry its agent name."""
    email = f"{agent}@agents.jetpack.invalid"
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": agent,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": agent,
        "GIT_COMMITTER_EMAIL": email,
    }
