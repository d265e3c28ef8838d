"""Shared pieces of the benchmarks: temp projects, the raw-SQLite baseline, a minimal stdio
JSON-RPC client, percentiles and the result table.

Not a benchmark itself (the leading underscore keeps run_all.py from running it).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlean

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable
PROTOCOL_VERSION = "2025-06-18"

# ---------------------------------------------------------------------------------------------
# Temporary projects


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory on the real filesystem (not tmpfs-specific), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"jetpack-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def subprocess_env(project: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``python -m jetpack`` child: this checkout, this project, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JETPACK_", "CLAUDE"))}
    env["JETPACK_PROJECT_DIR"] = str(project)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def jetpack_settings(project: Path) -> Any:
    from jetpack.config import load_settings

    return load_settings({"JETPACK_PROJECT_DIR": str(project)})


# ---------------------------------------------------------------------------------------------
# The raw-SQLite baseline: same engine (sqlean), same pragmas, minimal schema, hand-written SQL

RAW_SCHEMA = """
CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    parent_id        TEXT,
    title            TEXT NOT NULL,
    state            TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 2,
    skills           TEXT NOT NULL DEFAULT '[]',
    assignee         TEXT,
    lease_expires_at INTEGER,
    result_summary   TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    claimed_at       INTEGER,
    closed_at        INTEGER
);
CREATE INDEX tasks_ready ON tasks(priority, created_at, id) WHERE state = 'ready';
CREATE INDEX tasks_children ON tasks(parent_id, state);
CREATE TABLE task_ancestors (
    task_id     TEXT NOT NULL,
    ancestor_id TEXT NOT NULL,
    distance    INTEGER NOT NULL,
    PRIMARY KEY (task_id, ancestor_id)
);
CREATE TABLE dependencies (
    task_id    TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX dependencies_by_target ON dependencies(depends_on);
"""

BUSY_TIMEOUT_MS = 5000


def raw_connect(path: Path) -> Any:
    """A sqlean connection with Jetpack's pragmas: WAL, synchronous=NORMAL, busy_timeout; autocommit."""
    conn = sqlean.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def raw_create(path: Path) -> Any:
    conn = raw_connect(path)
    conn.executescript(RAW_SCHEMA)
    return conn


def raw_insert_flat(conn: Any, count: int, *, prefix: str = "rt") -> None:
    """``count`` independent ready tasks (the claim benchmarks' queue)."""
    now = time.time_ns() // 1_000_000
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO tasks(id, title, state, priority, created_at, updated_at) VALUES (?, ?, 'ready', ?, ?, ?)",
        [(f"{prefix}-{i:06d}", f"task {i}", i % 5, now + i, now + i) for i in range(count)],
    )
    conn.execute("COMMIT")


RAW_CLAIM = """UPDATE tasks SET state = 'claimed', assignee = ?, lease_expires_at = ?, claimed_at = ?, updated_at = ?
    WHERE id = (SELECT id FROM tasks WHERE state = 'ready' ORDER BY priority, created_at LIMIT 1)
    RETURNING id, title"""
RAW_DONE = """UPDATE tasks SET state = 'done', result_summary = ?, closed_at = ?, lease_expires_at = NULL,
        updated_at = ?
    WHERE id = ? AND assignee = ? AND state = 'claimed' RETURNING id"""
RAW_UNBLOCK = """UPDATE tasks SET state = 'ready', updated_at = ?
    WHERE state = 'open' AND id IN (SELECT task_id FROM dependencies WHERE depends_on = ?)
      AND NOT EXISTS (SELECT 1 FROM dependencies d JOIN tasks b ON b.id = d.depends_on
                      WHERE d.task_id = tasks.id AND b.state != 'done')"""
LEASE_MS = 600_000


def raw_claim(conn: Any, agent: str) -> str | None:
    now = time.time_ns() // 1_000_000
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(RAW_CLAIM, (agent, now + LEASE_MS, now, now)).fetchone()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return None if row is None else str(row[0])


def raw_complete(conn: Any, agent: str, task_id: str, summary: str) -> None:
    now = time.time_ns() // 1_000_000
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = conn.execute(RAW_DONE, (summary, now, now, task_id, agent)).fetchall()
        if not done:
            raise RuntimeError(f"raw complete of {task_id} by {agent} matched nothing")
        conn.execute(RAW_UNBLOCK, (now, task_id))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# ---------------------------------------------------------------------------------------------
# A minimal MCP client: newline-delimited JSON-RPC over the pipes of a `jetpack serve` child


def proc_stat(pid: int | str) -> tuple[str, list[str]]:
    """A process's name and the fields of /proc/PID/stat after it (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int, *, with_reaped: bool = False) -> float:
    """utime + stime of a process so far, and of the children it has waited for if ``with_reaped``."""
    fields = proc_stat(pid)[1]
    return sum(int(x) for x in fields[11 : 15 if with_reaped else 13]) / os.sysconf("SC_CLK_TCK")


def hub_pid(project: Path) -> int | None:
    """The pid of the hub that the project's ``jetpack serve --hub`` agents (this checkout's
    environment, see ``subprocess_env``) share, if one runs."""
    from jetpack.hub.address import hub_address, running_hub_pid

    return running_hub_pid(hub_address(jetpack_settings(project), {"JETPACK_PROJECT_DIR": str(project)}))


class StdioClient:
    """Just enough MCP to call tools: initialize, notifications/initialized, tools/call.

    Deliberately tiny (json + blocking pipe I/O) so that on a small machine the client costs a
    fraction of what the server does; the SDK's Python ``Client`` is several times heavier.
    """

    def __init__(
        self, project: Path, agent: str, *, extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None
    ) -> None:
        self.process = subprocess.Popen(
            [PYTHON, *extra_args, "-m", "jetpack", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=subprocess_env(project, JETPACK_AGENT=agent, **(env or {})),
            cwd=str(project),
        )
        self._next_id = 0

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        while True:
            line = self.process.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"jetpack serve exited (status {self.process.poll()}) during {method}")
            message = json.loads(line)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return dict(message["result"])
            # anything else (a server notification or request) is ignored

    def initialize(self) -> dict[str, Any]:
        result = self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "jetpack-bench", "version": "0"},
            },
        )
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return result

    def call(self, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        result = self.request("tools/call", {"name": tool, "arguments": arguments or {}})
        if result.get("isError"):
            raise RuntimeError(f"{tool} returned an error: {result.get('content')}")
        return dict(result.get("structuredContent") or {})

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far (Linux /proc; else 0)."""
        try:
            return process_cpu_seconds(self.process.pid)
        except OSError:
            return 0.0

    def close(self) -> tuple[float, float]:
        """Close stdin, wait for exit; return the server's (user, system) CPU seconds."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        _, _, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = 0
        if self.process.stdout is not None:
            self.process.stdout.close()
        return usage.ru_utime, usage.ru_stime

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        self.process.stdin.flush()


# ---------------------------------------------------------------------------------------------
# The machine


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    busy = sum(values) - values[3] - values[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU used by this process and its waited-for descendants (workers wait for their servers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def cpu_busy(interval: float = 0.5) -> float:
    """Fraction of all CPUs busy over ``interval`` seconds."""
    before = machine_busy_seconds()
    time.sleep(interval)
    return (machine_busy_seconds() - before) / (interval * (os.cpu_count() or 1))


def wait_for_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (up to ``max_wait`` s) until other work leaves the CPUs idle; return the last busy fraction.

    Benchmarks on a shared 2-CPU machine are meaningless while something else runs; the
    figure is printed in each report header so a noisy run can be recognised.
    """
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy(1.0)
    return busy


def add_common_arguments(parser: Any) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions: a smoke run")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the machine's CPUs to be idle (other work skews the figures)",
    )


# ---------------------------------------------------------------------------------------------
# Statistics and the result table


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


@dataclass
class Row:
    name: str
    value: str
    target: str = ""
    status: str = ""


@dataclass
class Report:
    title: str
    rows: list[Row] = field(default_factory=list)
    busy_before: float = field(default_factory=cpu_busy)  # CPU use by other work as the run starts
    _start: tuple[float, float, float] = field(
        default_factory=lambda: (time.monotonic(), machine_busy_seconds(), own_cpu_seconds())
    )

    def others_busy(self) -> float:
        """Fraction of the machine's CPUs used by other processes during the run (so far)."""
        wall = time.monotonic() - self._start[0]
        others = (machine_busy_seconds() - self._start[1]) - (own_cpu_seconds() - self._start[2])
        return max(0.0, others / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0

    def add(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        status = "" if ok is None else ("PASS" if ok else "MISS")
        self.rows.append(Row(name, value, target, status))

    def section(self, name: str) -> None:
        self.rows.append(Row(f"-- {name}", ""))

    def print(self) -> None:
        widths = [
            max(len(h), *(len(getattr(r, a)) for r in self.rows))
            for h, a in (("measure", "name"), ("value", "value"), ("target", "target"), ("", "status"))
        ]
        print()
        print(f"== {self.title}")
        others = self.others_busy()
        print(f"   {machine()}")
        print(f"   CPUs used by other processes: {self.busy_before:.0%} just before the run, {others:.0%} during it")
        if max(self.busy_before, others) > 0.10:
            print("   WARNING: other work was using the CPUs; these figures are pessimistic (see --wait-idle)")
        header = ("measure", "value", "target", "")
        line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
        print(line.rstrip())
        print("  ".join("-" * w for w in widths))
        for r in self.rows:
            if r.name.startswith("-- "):
                print(r.name)
                continue
            cells = (r.name.ljust(widths[0]), r.value.rjust(widths[1]), r.target.ljust(widths[2]), r.status)
            print("  ".join(cells).rstrip())
        misses = [r.name for r in self.rows if r.status == "MISS"]
        print(f"targets: {sum(r.status == 'PASS' for r in self.rows)} PASS, {len(misses)} MISS")
        sys.stdout.flush()


def machine() -> str:
    return (
        f"jetpack {revision()}, python {platform.python_version()}, SQLite {sqlean.sqlite_version} (sqlean), "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}"
    )


def revision() -> str:
    """The checkout measured: commit, and whether product code (jetpack/) has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "jetpack"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "(unknown revision)"
    return f"{commit}{' + local changes' if dirty else ''}"
