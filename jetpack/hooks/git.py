"""Git plumbing for the hook: the working tree's top level, the hooks directory, the staged paths.

Every command runs in the caller's working directory with the caller's environment, so inside a
hook it sees what git set up for it (``GIT_INDEX_FILE`` for ``git commit -a`` or ``git commit
PATH``, ``GIT_DIR`` for linked worktrees). Paths come back as git prints them: relative to the
top level of the working tree, ``/``-separated, undecoded bytes mapped through ``os.fsdecode``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from jetpack.errors import JetpackError

# Settings that would change what the commands below print; pinned so user config cannot.
_PINNED = ("-c", "diff.relative=false", "-c", "core.quotepath=false", "-c", "color.ui=false")
_TIMEOUT_SECONDS = 60


class GitError(JetpackError):
    """git is missing, failed, or this is not a git working tree."""


@dataclass(frozen=True)
class StagedChange:
    """One entry of ``git diff --cached --name-status``: a status letter and one or two paths."""

    status: str  # A, C, D, M, R, T, U, X (renames and copies keep git's score out: "R", not "R097")
    path: str  # the path in the index (the new name of a rename or copy)
    old_path: str | None = None  # the old name of a rename or copy

    @property
    def paths(self) -> tuple[str, ...]:
        """Every name this change touches: both names of a rename or copy."""
        return (self.path,) if self.old_path is None else (self.old_path, self.path)


def run_git(
    args: Sequence[str], cwd: Path | None = None, environ: Mapping[str, str] | None = None, *, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` (output as bytes). Raises GitError when git is missing or, with check, fails."""
    try:
        done = subprocess.run(
            ["git", *_PINNED, *args],
            cwd=cwd,
            env=None if environ is None else dict(environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=_TIMEOUT_SECONDS,
        )
    except FileNotFoundError as error:
        raise GitError("git is not installed or not on PATH; install git (the hook is a git hook)") from error
    except subprocess.TimeoutExpired as error:
        raise GitError(f"git {' '.join(args)} took more than {_TIMEOUT_SECONDS}s; is the repository locked?") from error
    if check and done.returncode != 0:
        message = os.fsdecode(done.stderr).strip() or f"exit status {done.returncode}"
        raise GitError(f"git {' '.join(args)} failed: {message}")
    return done


def top_level(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The top-level directory of the working tree containing ``cwd``."""
    done = run_git(["rev-parse", "--show-toplevel"], cwd, environ, check=False)
    if done.returncode != 0:
        where = cwd or Path.cwd()
        detail = os.fsdecode(done.stderr).strip()
        raise GitError(f"{where} is not inside the working tree of a git repository ({detail})")
    return Path(os.fsdecode(done.stdout).rstrip("\n"))


def hooks_path_setting(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``core.hooksPath`` (``~`` expanded), or None when it is not set."""
    done = run_git(["config", "--path", "--get", "core.hooksPath"], cwd, environ, check=False)
    value = os.fsdecode(done.stdout).rstrip("\n")
    return value if done.returncode == 0 and value else None


def hooks_dir(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The directory git runs hooks from: ``core.hooksPath`` if set (a relative value is relative
    to the top level of the working tree, as git reads it), else the repository's ``hooks``
    directory (shared by linked worktrees)."""
    top = top_level(cwd, environ)
    configured = hooks_path_setting(cwd, environ)
    if configured is not None:
        path = Path(configured)
        return path if path.is_absolute() else top / path
    default = os.fsdecode(run_git(["rev-parse", "--git-path", "hooks"], cwd, environ).stdout).rstrip("\n")
    path = Path(default)
    return Path(os.path.abspath(path if path.is_absolute() else (cwd or Path.cwd()) / path))


def staged_changes(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> list[StagedChange]:
    """What the next commit changes, from ``git diff --cached --name-status -z -M``: renames (and
    copies, if git reports them) come with both names; deletions are included."""
    out = run_git(["diff", "--cached", "--name-status", "-z", "-M", "--no-ext-diff"], cwd, environ).stdout
    return parse_name_status(out)


def parse_name_status(out: bytes) -> list[StagedChange]:
    """Parse ``--name-status -z`` output: ``STATUS\\0PATH\\0`` or ``R<score>\\0OLD\\0NEW\\0``."""
    fields = out.split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    changes: list[StagedChange] = []
    index = 0
    while index < len(fields):
        status = fields[index].decode("ascii", "replace")
        letter = status[:1]
        if letter in ("R", "C"):
            if index + 2 >= len(fields):
                raise GitError(f"unexpected git diff output: {letter} without two paths")
            old, new = os.fsdecode(fields[index + 1]), os.fsdecode(fields[index + 2])
            changes.append(StagedChange(letter, new, old))
            index += 3
        else:
            if index + 1 >= len(fields) or not letter:
                raise GitError(f"unexpected git diff output near {status!r}")
            changes.append(StagedChange(letter, os.fsdecode(fields[index + 1])))
            index += 2
    return changes
