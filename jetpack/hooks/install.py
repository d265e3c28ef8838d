"""Installing the pre-commit hook: a small POSIX sh script that runs ``python -m jetpack hook check``.

The script names the interpreter that installed it by absolute path, so it works without
``jetpack`` on PATH and from any directory of the repository. It goes where git looks for hooks
(``core.hooksPath`` honoured). A pre-commit hook that is already there and is not Jetpack's is
kept: it is renamed ``pre-commit.local`` and Jetpack's hook runs it first; if it fails, the commit
fails and the reservation check does not run. Installing again rewrites only Jetpack's script (a
new interpreter path, a newer script), so nothing is ever chained twice.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jetpack.errors import Conflict, InvalidInput
from jetpack.hooks.git import hooks_dir, hooks_path_setting

HOOK_NAME = "pre-commit"
CHAINED_NAME = "pre-commit.local"  # the hook that was there before ours; ours runs it first
MARKER = "# jetpack-hook: pre-commit"
SCRIPT_VERSION = 1
_SNIFF_BYTES = 4096

_TEMPLATE = """\
#!/bin/sh
{marker} v{version}
# Installed by `jetpack hook install`: checks the staged paths against Jetpack's file
# reservations (an exclusive reservation of another agent blocks the commit). Reinstall rather
# than edit. Bypass once: git commit --no-verify. Docs: docs/hooks.md in the Jetpack repository.
# A pre-commit hook that was here before is kept as {chained} and runs first.
jetpack_python={python}
hook_dir=$(dirname -- "$0")
if [ -f "$hook_dir/{chained}" ] && [ -x "$hook_dir/{chained}" ]; then
    "$hook_dir/{chained}" "$@" || exit $?
fi
if [ ! -x "$jetpack_python" ]; then
    echo "jetpack: the Python that installed this hook is gone: $jetpack_python" >&2
    echo "jetpack: reinstall it with 'jetpack hook install', or bypass once with 'git commit --no-verify'" >&2
    if [ "${{JETPACK_HOOK_MODE:-}}" = warn ]; then exit 0; fi
    exit 2
fi
exec "$jetpack_python" -m jetpack hook check
"""


@dataclass(frozen=True)
class InstallResult:
    hook: Path  # the script we wrote
    hooks_dir: Path
    hooks_path_configured: bool  # whether core.hooksPath chose the directory
    python: str
    action: str  # "installed", "updated" (ours, rewritten) or "unchanged"
    chained: Path | None = None  # the previous hook, now run first by ours
    chained_executable: bool = True  # git skips non-executable hooks; so does ours
    moved_existing: bool = False  # whether this install moved a foreign pre-commit to CHAINED_NAME
    backup: Path | None = None  # with --force: where an older CHAINED_NAME was moved aside


def quote_sh(text: str) -> str:
    """``text`` as one single-quoted POSIX sh word."""
    return "'" + text.replace("'", "'\\''") + "'"


def hook_script(python: str) -> str:
    return _TEMPLATE.format(marker=MARKER, version=SCRIPT_VERSION, chained=CHAINED_NAME, python=quote_sh(python))


def is_jetpack_hook(path: Path) -> bool:
    """Whether the file at ``path`` is a hook this module wrote (any version)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return False
    return MARKER.encode() in head


def default_python() -> str:
    """The interpreter running now, as an absolute path — not resolved, so a virtualenv's
    ``bin/python`` symlink stays the virtualenv's."""
    return os.path.abspath(sys.executable)


def install_hook(
    repo: Path | None = None,
    *,
    python: str | None = None,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
) -> InstallResult:
    """Install (or refresh) Jetpack's pre-commit hook in the repository containing ``repo``.

    Raises Conflict when a foreign pre-commit hook would have to be kept as ``pre-commit.local``
    but that name is taken (``force`` moves the old ``pre-commit.local`` aside, with a timestamp).
    """
    interpreter = python or default_python()
    if not os.path.isabs(interpreter):
        raise InvalidInput(f"the hook needs an absolute interpreter path, not {interpreter!r}")
    directory = hooks_dir(repo, environ)
    configured = hooks_path_setting(repo, environ) is not None
    target = directory / HOOK_NAME
    chained = directory / CHAINED_NAME
    script = hook_script(interpreter)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        action = "installed"
        moved = False
        backup: Path | None = None
        if os.path.lexists(target):
            if target.is_dir():
                raise Conflict(f"{target} is a directory, not a hook script; move it away and install again")
            if is_jetpack_hook(target):
                action = "unchanged" if _read(target) == script and _is_executable(target) else "updated"
            else:
                if os.path.lexists(chained):
                    if not force:
                        raise Conflict(
                            f"{target} is another tool's hook and {chained} already exists, so the existing hook "
                            "cannot be kept under that name; run `jetpack hook install --force` to move the old "
                            f"{CHAINED_NAME} aside (kept, with a timestamp, but no longer run), or merge the two "
                            "hooks by hand"
                        )
                    backup = directory / f"{CHAINED_NAME}.{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.bak"
                    os.replace(chained, backup)
                os.replace(target, chained)
                moved = True
        if action != "unchanged":
            _write_executable(target, script)
    except OSError as error:
        raise Conflict(f"could not install the hook in {directory}: {error}") from error
    has_chained = os.path.lexists(chained)
    return InstallResult(
        hook=target,
        hooks_dir=directory,
        hooks_path_configured=configured,
        python=interpreter,
        action=action,
        chained=chained if has_chained else None,
        chained_executable=has_chained and chained.is_file() and _is_executable(chained),
        moved_existing=moved,
        backup=backup,
    )


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _is_executable(path: Path) -> bool:
    return os.access(path, os.X_OK)


def _write_executable(target: Path, text: str) -> None:
    """Write atomically (a temporary file in the same directory, then rename), mode 0755."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(temporary, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
