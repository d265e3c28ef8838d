"""The git pre-commit hook, end to end: real git repositories, real `git commit`, real hook scripts.

Each test makes a temporary repository with a Jetpack project in it (``.jetpack/jetpack.db``),
lets agents reserve files through the reservation service on that database file, installs the
hook and commits through git as agent "alice" (``JETPACK_AGENT``). Git runs with no global or
system configuration; the hook's Python finds this checkout through PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import REPO

from jetpack.errors import Conflict
from jetpack.hooks.install import CHAINED_NAME, install_hook
from jetpack.reservations.service import ReservationContext, ReserveMode, reserve_files
from jetpack.store import open_store

pytestmark = pytest.mark.e2e

TIMEOUT = 60


def base_env(**extra: str) -> dict[str, str]:
    """Like e2e_helpers.server_env, minus the project: no leaked JETPACK_*/CLAUDE*/GIT_* variables,
    explicit PYTHONPATH, and git isolated from the user's and the system's configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JETPACK_", "CLAUDE", "GIT_"))}
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = os.environ.get("PATH", "")
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env.update(extra)
    return env


class Repo:
    """A git repository with a Jetpack project at its top level."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / ".jetpack" / "jetpack.db"

    def run(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(args),
            cwd=cwd or self.root,
            env=env if env is not None else base_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if ok:
            assert done.returncode == 0, f"{' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def git(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("git", *args, ok=ok)

    def jetpack(
        self, *args: str, cwd: Path | None = None, ok: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "jetpack", *args, cwd=cwd, env=base_env(**env), ok=ok)

    def commit(self, message: str = "change", *options: str, agent: str | None = "alice", **env: str) -> Any:
        if agent is not None:
            env["JETPACK_AGENT"] = agent
        return self.run("git", "commit", "-q", "-m", message, *options, env=base_env(**env), ok=False)

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").stdout.strip()

    def write(self, path: str, text: str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def change(self, *paths: str) -> None:
        """Edit and stage these files."""
        for path in paths:
            self.write(path, (self.root / path).read_text() + "more\n" if (self.root / path).exists() else "new\n")
        self.git("add", "--", *paths)

    def reserve(self, agent: str, *patterns: str, mode: ReserveMode = ReserveMode.EXCLUSIVE, **options: Any) -> None:
        store = open_store(self.db)
        try:
            result = reserve_files(
                ReservationContext(store=store, repo_root=self.root), agent, list(patterns), mode=mode, **options
            )
        finally:
            store.close()
        assert result.recorded, result

    def install(self) -> None:
        """Install the hook in-process (the CLI path is covered by the tests that use `jetpack hook install`)."""
        install_hook(self.root, python=sys.executable, environ=base_env())


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    root = tmp_path / "repo"
    root.mkdir()
    repo = Repo(root)
    repo.git("-c", "init.defaultBranch=main", "init", "-q")
    repo.git("config", "user.name", "Test Committer")
    repo.git("config", "user.email", "committer@example.com")
    repo.git("config", "commit.gpgsign", "false")
    repo.write(".gitignore", ".jetpack/jetpack.db*\n")
    for path in ("src/api/users.py", "src/api/orders.py", "src/old.py", "docs/guide.md", "README.md"):
        repo.write(path, f"# {path}\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "initial")
    open_store(repo.db).close()  # the Jetpack project: .jetpack/jetpack.db at the top level
    yield repo


def assert_blocked(repo: Repo, done: subprocess.CompletedProcess[str], head: str) -> None:
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert repo.head() == head, "the commit happened"


def assert_committed(repo: Repo, done: subprocess.CompletedProcess[str], head: str) -> None:
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert repo.head() != head, "no commit was made"


def test_exclusive_reservation_of_another_agent_blocks_the_commit(repo: Repo) -> None:
    repo.reserve("bob", "src/api/**", task_id="jp-a3f8", reason="refactor handlers")
    repo.install()
    repo.change("src/api/users.py", "README.md")
    head = repo.head()

    done = repo.commit()

    assert_blocked(repo, done, head)
    assert "bob" in done.stderr
    assert "'src/api/**'" in done.stderr
    assert "src/api/users.py" in done.stderr
    assert "jp-a3f8" in done.stderr
    assert " UTC" in done.stderr
    assert "git commit --no-verify" in done.stderr
    assert "README.md" not in done.stderr
    # The same verdict as JSON, asked from a subdirectory (any cwd inside the repository works).
    check = repo.jetpack("hook", "check", "--json", cwd=repo.root / "src" / "api", ok=False, JETPACK_AGENT="alice")
    assert check.returncode == 1, check.stderr
    verdict = json.loads(check.stdout)
    assert verdict["verdict"] == "blocked" and verdict["blocked"] is True
    assert verdict["agent"] == "alice" and verdict["paths_checked"] == 2
    [path] = verdict["paths"]
    assert path["path"] == "src/api/users.py" and path["status"] == "M"
    [conflict] = path["conflicts"]
    assert conflict["holder"] == "bob" and conflict["pattern"] == "src/api/**"
    assert conflict["exclusive"] is True and conflict["blocking"] is True
    assert conflict["task_id"] == "jp-a3f8"


def test_advisory_and_shared_reservations_only_warn(repo: Repo) -> None:
    repo.reserve("bob", "src/api/*.py", mode=ReserveMode.ADVISORY)
    repo.reserve("carol", "docs", mode=ReserveMode.ADVISORY, shared=True)
    repo.install()
    repo.change("src/api/orders.py", "docs/guide.md")
    head = repo.head()

    done = repo.commit()

    assert_committed(repo, done, head)
    assert "warning" in done.stderr
    assert "bob's advisory reservation" in done.stderr and "'src/api/*.py'" in done.stderr
    assert "carol's shared reservation" in done.stderr
    assert "blocked" not in done.stderr


def test_your_own_exclusive_reservation_never_blocks(repo: Repo) -> None:
    repo.reserve("alice", "src/**")
    repo.install()
    repo.change("src/api/users.py")
    head = repo.head()

    done = repo.commit()

    assert_committed(repo, done, head)
    assert "jetpack" not in done.stderr


@pytest.mark.parametrize("reserved", ["old", "new"])
def test_a_rename_is_checked_under_both_names(repo: Repo, reserved: str) -> None:
    repo.reserve("bob", "src/old.py" if reserved == "old" else "lib/new.py")
    repo.install()
    (repo.root / "lib").mkdir()
    repo.git("mv", "src/old.py", "lib/new.py")
    head = repo.head()

    done = repo.commit()

    assert_blocked(repo, done, head)
    if reserved == "old":
        assert "src/old.py (renamed to lib/new.py)" in done.stderr, done.stderr
    else:
        assert "lib/new.py (renamed from src/old.py)" in done.stderr, done.stderr
    assert "bob" in done.stderr


def test_a_deletion_is_checked(repo: Repo) -> None:
    repo.reserve("bob", "src/api/users.py")
    repo.git("rm", "-q", "src/api/users.py")

    check = repo.jetpack("hook", "check", "--json", ok=False, JETPACK_AGENT="alice")

    assert check.returncode == 1, check.stderr
    [path] = json.loads(check.stdout)["paths"]
    assert path["path"] == "src/api/users.py" and path["status"] == "D"


def test_an_existing_hook_still_runs_once_after_installing_twice(repo: Repo, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    hooks = repo.root / ".git" / "hooks"
    original = f'#!/bin/sh\necho ran >> "{marker}"\n'
    (hooks / "pre-commit").write_text(original)
    (hooks / "pre-commit").chmod(0o755)

    first = repo.jetpack("hook", "install")
    second = repo.jetpack("hook", "install", "--json")

    assert "Installed" in first.stdout and str(hooks / CHAINED_NAME) in first.stdout
    assert json.loads(second.stdout)["action"] == "unchanged"
    assert (hooks / CHAINED_NAME).read_text() == original
    assert not list(hooks.glob(f"{CHAINED_NAME}.*"))
    repo.change("README.md")
    head = repo.head()
    assert_committed(repo, repo.commit(), head)
    assert marker.read_text() == "ran\n"


def test_a_failing_existing_hook_still_fails_the_commit(repo: Repo) -> None:
    hooks = repo.root / ".git" / "hooks"
    (hooks / "pre-commit").write_text("#!/bin/sh\necho 'lint failed' >&2\nexit 3\n")
    (hooks / "pre-commit").chmod(0o755)
    repo.install()
    repo.change("README.md")
    head = repo.head()

    done = repo.commit()

    assert_blocked(repo, done, head)
    assert "lint failed" in done.stderr


def test_install_keeps_a_taken_chain_name_unless_forced(repo: Repo) -> None:
    hooks = repo.root / ".git" / "hooks"
    (hooks / "pre-commit").write_text("#!/bin/sh\nexit 0\n")
    (hooks / CHAINED_NAME).write_text("#!/bin/sh\necho older\n")

    with pytest.raises(Conflict, match="--force"):
        install_hook(repo.root, python=sys.executable, environ=base_env())
    assert (hooks / CHAINED_NAME).read_text() == "#!/bin/sh\necho older\n"

    result = install_hook(repo.root, python=sys.executable, force=True, environ=base_env())
    assert result.backup is not None and result.backup.read_text() == "#!/bin/sh\necho older\n"
    assert (hooks / CHAINED_NAME).read_text() == "#!/bin/sh\nexit 0\n"
    assert result.chained == hooks / CHAINED_NAME and result.moved_existing


def test_core_hooks_path_is_honoured(repo: Repo) -> None:
    repo.git("config", "core.hooksPath", "tools/githooks")
    repo.reserve("bob", "src/api/users.py")

    done = repo.jetpack("hook", "install")

    installed = repo.root / "tools" / "githooks" / "pre-commit"
    assert str(installed) in done.stdout and "core.hooksPath" in done.stdout
    assert installed.stat().st_mode & stat.S_IXUSR
    assert not (repo.root / ".git" / "hooks" / "pre-commit").exists()
    repo.change("src/api/users.py")
    head = repo.head()
    blocked = repo.commit()
    assert_blocked(repo, blocked, head)
    assert "bob" in blocked.stderr


def test_without_jetpack_agent_the_commit_goes_through_with_a_warning(repo: Repo) -> None:
    repo.reserve("bob", "src/**")
    repo.install()
    repo.change("src/api/users.py")
    head = repo.head()

    done = repo.commit(agent=None)

    assert_committed(repo, done, head)
    assert "JETPACK_AGENT is not set" in done.stderr
    assert "bob's exclusive reservation" in done.stderr


def _break_corrupt(repo: Repo) -> dict[str, str]:
    for extra in ("-wal", "-shm"):
        Path(f"{repo.db}{extra}").unlink(missing_ok=True)
    repo.db.write_bytes(b"this is not a database " * 100)
    return {}


def _break_missing_directory(repo: Repo) -> dict[str, str]:
    return {"JETPACK_DB": f"{os.devnull}/jetpack/jetpack.db"}  # under a file: cannot be created


def _break_unreadable_directory(repo: Repo) -> dict[str, str]:
    if os.geteuid() == 0:
        pytest.skip("root reads any directory")
    repo.db.parent.chmod(0)
    return {}


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_break_corrupt, "not a database"),
        (_break_missing_directory, "Not a directory"),
        (_break_unreadable_directory, "Permission denied"),
    ],
    ids=["corrupt-file", "missing-directory", "unreadable-directory"],
)
def test_an_unreachable_datalayer_fails_the_commit_unless_warn_mode(repo: Repo, breakage: Any, expected: str) -> None:
    repo.reserve("bob", "src/**")
    repo.install()
    repo.change("src/api/users.py")
    env = breakage(repo)
    head = repo.head()
    try:
        refused = repo.commit(**env)
        assert_blocked(repo, refused, head)
        assert "commit refused" in refused.stderr and "Jetpack" in refused.stderr
        assert expected in refused.stderr
        assert "git commit --no-verify" in refused.stderr and "JETPACK_HOOK_MODE=warn" in refused.stderr

        warned = repo.commit(**env, JETPACK_HOOK_MODE="warn")
        assert_committed(repo, warned, head)
        assert "warning" in warned.stderr and expected in warned.stderr
    finally:
        repo.db.parent.chmod(0o755)


def test_warn_mode_turns_a_block_into_a_warning(repo: Repo) -> None:
    repo.reserve("bob", "src/**")
    repo.install()
    repo.change("src/api/users.py")
    head = repo.head()

    done = repo.commit(JETPACK_HOOK_MODE="warn")

    assert_committed(repo, done, head)
    assert "bob's exclusive reservation" in done.stderr and "warn mode" in done.stderr


def test_no_verify_bypasses_the_hook(repo: Repo) -> None:
    repo.reserve("bob", "src/**")
    repo.install()
    repo.change("src/api/users.py")
    head = repo.head()

    done = repo.commit("bypass", "--no-verify")

    assert_committed(repo, done, head)
    assert "jetpack" not in done.stderr


def test_a_linked_worktree_is_checked_against_the_main_checkouts_project(repo: Repo, tmp_path: Path) -> None:
    repo.reserve("bob", "src/api/users.py")
    repo.install()
    worktree = tmp_path / "alice-worktree"
    repo.git("worktree", "add", "-q", "-b", "alice", str(worktree))
    (worktree / "src" / "api" / "users.py").write_text("changed in a worktree\n")
    repo.run("git", "add", "src/api/users.py", cwd=worktree)

    def commit(**env: str) -> subprocess.CompletedProcess[str]:
        return repo.run(
            "git", "commit", "-q", "-m", "x", cwd=worktree, env=base_env(JETPACK_AGENT="alice", **env), ok=False
        )

    shared_project = commit(JETPACK_PROJECT_DIR=str(repo.root))
    assert shared_project.returncode != 0 and "bob's exclusive reservation" in shared_project.stderr
    # Without it the worktree has no .jetpack/ of its own: refused, saying how to point at the project.
    no_project = commit()
    assert no_project.returncode != 0
    assert "no Jetpack database" in no_project.stderr and "JETPACK_PROJECT_DIR" in no_project.stderr
    assert repo.run("git", "log", "-1", "--format=%s", cwd=worktree).stdout.strip() == "initial"
