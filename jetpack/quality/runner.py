"""Running the configured gate commands, and noting which commit they ran on.

Each command runs through the shell in the directory given (the project, or a worker's git
worktree), in a process group of its own, so a timeout kills everything it started. ``JETPACK_*``
variables are left out of its environment: a gate measures the code, not the swarm running it
(a project's own tests must not find the swarm's database through ``JETPACK_PROJECT_DIR``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from jetpack.config import QualitySettings
from jetpack.quality.model import GateResult
from jetpack.quality.parsing import read_output

TAIL_CHARS = 4000  # output kept with a result, for the details of a failure


def run_gates(settings: QualitySettings, cwd: Path) -> list[GateResult]:
    """Run the configured commands one after another, in ``cwd``."""
    return [run_gate(gate, command, cwd, settings.timeout_seconds) for gate, command in settings.commands().items()]


def run_gate(gate: str, command: str, cwd: Path, timeout_seconds: float) -> GateResult:
    started = time.monotonic()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("JETPACK_")}
    try:
        process = subprocess.Popen(
            command,
            shell=True,
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:
        return GateResult(gate=gate, command=command, output_tail=f"could not start {command!r}: {error}")
    timed_out = False
    try:
        raw, _ = process.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process)
        try:
            raw, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a descendant left the group and holds the pipe open
            raw = b""
    output = raw.decode("utf-8", errors="replace")
    exit_code = None if timed_out else process.returncode
    reading = read_output(gate, output, exit_code)
    return GateResult(
        gate=gate,
        command=command,
        exit_code=exit_code,
        timed_out=timed_out,
        duration_ms=int((time.monotonic() - started) * 1000),
        passed=reading.passed,
        failures=reading.failures,
        coverage=reading.coverage,
        items=reading.items,
        output_tail=output[-TAIL_CHARS:],
    )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def git_state(cwd: Path) -> tuple[str | None, bool]:
    """HEAD's commit and whether the working tree has changes; (None, False) outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if head.returncode != 0:
            return None, False
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, False
    return head.stdout.strip() or None, bool(status.stdout.strip())
