"""Agent Mail under load: send_mail + fetch_inbox from K concurrent stdio agents, beside raw SQLite.

    .venv/bin/python benchmarks/bench_mail.py [--quick] [--wait-idle S] [--agents K] [--seconds S] [--profile]

K (default 50) agent processes, each talking newline-delimited JSON-RPC over stdio to its own
``python -m jetpack serve`` on one DB (benchmarks/_common.py StdioClient: json and blocking pipes,
so the client costs a fraction of what its server does). Every agent loops: ``send_mail`` a message
(a ~200-byte body) to 1-3 random other agents, then ``fetch_inbox(limit=50)``.

a) saturated: every agent loops without pause for S seconds. Reported: messages/s together
   (messages sent / wall time of the measured window) and the client-side p50 / p99 latency of
   send_mail and of fetch_inbox. Targets: >= 1,000 messages/s, p99 <= 20 ms (both calls).
b) paced: the same servers, each agent starting a round every K / R seconds, so the agents
   together offer R (--paced-rate, default 1,000) messages/s: the latency (p99 judged against the
   same target) when the load is the target rate rather than all the machine can take. In a) a
   closed loop keeps one call per agent in flight, so its mean latency is K / calls per second.
c) afterwards every agent drains its inbox, and every delivery row in the DB must have been
   fetched exactly once by its recipient (count of deliveries vs messages fetched; no duplicates).

Beside it, in the same run: raw SQLite inserting the same rows (a message row and its delivery
rows per send, one BEGIN IMMEDIATE transaction, Jetpack's schema, a bare sqlean connection with
the pragmas of _common.raw_connect) from K processes; one stdio agent alone (the uncontended
latency); and the service functions in one thread (jetpack.mail.send_mail + fetch_inbox, no MCP).
--profile adds a cProfile of the service-level loop.

Each of a)–c) runs twice (``--mode both``, the default): with a server process per agent
(``jetpack serve``), and with the agents' ``jetpack serve --hub`` relays handing their pipes to one
hub (docs/hub.md; the hub's CPU is counted as server CPU).

The agent processes are this script itself (``bench_mail.py _worker ...``), started with the same
``ready`` / command-line protocol as benchmarks/_agent_worker.py.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    PYTHON,
    Report,
    StdioClient,
    add_common_arguments,
    hub_pid,
    jetpack_settings,
    ms,
    percentile,
    process_cpu_seconds,
    raw_connect,
    temp_dir,
    wait_for_quiet,
)

MESSAGES_TARGET = 1000.0
P99_TARGET = 0.020
FETCH_LIMIT = 50
BODY_BYTES = 200

# ---------------------------------------------------------------------------------------------
# What every agent does (shared by the stdio and raw workers and the service loop)


def agent_name(index: int) -> str:
    return f"agent-{index:02d}"


def body_for(rng: random.Random, n: int) -> str:
    """A ~200-byte Markdown-ish body, different per message (no compression by repetition)."""
    words = " ".join(f"{rng.choice(_WORDS)}" for _ in range(30))
    return f"Round {n}: {words}"[:BODY_BYTES].ljust(BODY_BYTES, ".")


_WORDS = (
    "claim",
    "tests",
    "schema",
    "migration",
    "handoff",
    "review",
    "fixture",
    "refactor",
    "parser",
    "index",
    "queue",
    "lease",
    "reservation",
    "src/api/routes.py",
    "done",
    "blocked",
    "please",
    "rebase",
    "merged",
    "pending",
)


def recipients(rng: random.Random, others: list[str]) -> list[str]:
    return rng.sample(others, rng.randint(1, min(3, len(others))))


# ---------------------------------------------------------------------------------------------
# The agent processes: ``bench_mail.py _worker MODE LOCATION INDEX PEERS SEED``
#
# Prints ``ready`` once set up, then obeys lines on stdin: ``run SECONDS INTERVAL`` (loop for
# SECONDS; a round every INTERVAL seconds, 0 = no pause; prints one JSON line of results),
# ``drain`` (stdio: fetch until the inbox is empty; prints the message ids fetched over the whole
# life of the agent) and EOF (exit).


class _StdioAgent:
    def __init__(self, project: Path, name: str, *, hub: bool = False) -> None:
        self.client = StdioClient(project, name, env={"JETPACK_HUB": "1" if hub else "0"})
        self.client.initialize()
        self.name = name
        self.fetched: list[int] = []

    def send(self, to: list[str], subject: str, body: str) -> None:
        self.client.call("send_mail", {"to": to, "subject": subject, "body": body})

    def fetch(self) -> int:
        page = self.client.call("fetch_inbox", {"limit": FETCH_LIMIT})
        ids = [m["id"] for m in page.get("messages", ())]
        self.fetched.extend(ids)
        return len(ids)

    def cpu(self) -> float:
        return self.client.cpu_seconds()

    def close(self) -> None:
        self.client.close()


class _RawAgent:
    """The same rows through a bare sqlean connection: a message row and its delivery rows."""

    MESSAGE = """INSERT INTO messages(thread_id, sender, sender_kind, subject, body, importance, ack_required,
            kind, addressed_to, created_at)
        VALUES (?, ?, 'agent', ?, ?, 'normal', 0, 'note', ?, ?) RETURNING id"""
    DELIVERY = "INSERT INTO deliveries(message_id, recipient, urgent, ack_required) VALUES (?, ?, 0, 0)"

    def __init__(self, db: Path, name: str) -> None:
        self.conn = raw_connect(db)
        self.name = name
        self.fetched: list[int] = []
        self.threads = 0

    def send(self, to: list[str], subject: str, body: str) -> None:
        self.threads += 1
        now = time.time_ns() // 1_000_000
        thread = f"th-{self.name}-{self.threads}"
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            message_id = self.conn.execute(
                self.MESSAGE, (thread, self.name, subject, body, json.dumps(to), now)
            ).fetchone()[0]
            self.conn.executemany(self.DELIVERY, [(message_id, r) for r in to])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def fetch(self) -> int:  # the baseline only inserts
        return 0

    def cpu(self) -> float:
        return 0.0

    def close(self) -> None:
        self.conn.close()


def _run_phase(agent: Any, rng: random.Random, others: list[str], seconds: float, interval: float) -> dict[str, Any]:
    sends: list[float] = []
    fetches: list[float] = []
    deliveries = 0
    cpu0, server0 = time.process_time(), agent.cpu()
    start = time.perf_counter()
    deadline = start + seconds
    # Agents are not in step: each starts at a random point of its interval (else all 50 write at once).
    next_round = start + (rng.uniform(0, interval) if interval else 0.0)
    n = 0
    while True:
        now = time.perf_counter()
        if interval:
            if next_round > now:
                time.sleep(next_round - now)
                now = time.perf_counter()
            next_round += interval
        if now >= deadline:
            break
        to = recipients(rng, others)
        body = body_for(rng, n)
        t0 = time.perf_counter()
        agent.send(to, f"{agent.name} #{n}", body)
        t1 = time.perf_counter()
        agent.fetch()
        t2 = time.perf_counter()
        sends.append(t1 - t0)
        fetches.append(t2 - t1)
        deliveries += len(to)
        n += 1
    end = time.perf_counter()
    return {
        "sent": n,
        "deliveries": deliveries,
        "start": start,
        "end": end,
        "send": sends,
        "fetch": fetches if isinstance(agent, _StdioAgent) else [],
        "client_cpu": time.process_time() - cpu0,
        "server_cpu": agent.cpu() - server0,
    }


def worker_main(argv: list[str]) -> None:
    mode, location, index, peers, seed = argv[0], Path(argv[1]), int(argv[2]), int(argv[3]), int(argv[4])
    name = agent_name(index)
    others = [agent_name(i) for i in range(peers) if i != index]
    rng = random.Random(seed)
    agent: Any = _RawAgent(location, name) if mode == "raw" else _StdioAgent(location, name, hub=mode == "hub")
    if isinstance(agent, _StdioAgent):
        # Registers the agent and warms the server's code paths for both tools (mail to itself,
        # fetched at once; counted in the exactly-once check like every other delivery).
        agent.send([name], "warm-up", body_for(rng, 0))
        agent.fetch()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "run":
            result = _run_phase(agent, rng, others, float(command[1]), float(command[2]))
        elif command[0] == "drain":
            while agent.fetch():
                pass
            result = {"fetched": agent.fetched}
        else:
            raise SystemExit(f"worker: unknown command {line!r}")
        print(json.dumps(result), flush=True)
    agent.close()


class Workers:
    """K agent processes started together; phases are broadcast to all, results gathered."""

    def __init__(self, mode: str, location: Path, agents: int, peers: int, seed: int) -> None:
        self.mode = mode
        self.killed = False
        script = Path(__file__).resolve()
        self.processes = [
            subprocess.Popen(
                [PYTHON, str(script), "_worker", mode, str(location), str(i), str(peers), str(seed * 1000 + i)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=str(script.parent),
            )
            for i in range(agents)
        ]
        try:
            for process in self.processes:
                line = self._read(process)
                if line != "ready":
                    raise RuntimeError(f"{mode} worker did not start (said {line!r}, status {process.poll()})")
        except BaseException:
            self.kill()
            raise

    def _read(self, process: subprocess.Popen[str]) -> str:
        line = process.stdout.readline().strip()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"{self.mode} worker exited (status {process.poll()})")
        return line

    def command(self, line: str) -> list[dict[str, Any]]:
        try:
            for process in self.processes:
                process.stdin.write(line + "\n")  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]
            return [json.loads(self._read(p)) for p in self.processes]
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """Stop the workers started here (their servers exit when their stdin closes)."""
        self.killed = True
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()

    def run(self, seconds: float, interval: float = 0.0) -> dict[str, Any]:
        results = self.command(f"run {seconds} {interval}")
        wall = max(r["end"] for r in results) - min(r["start"] for r in results)
        return {
            "sent": sum(r["sent"] for r in results),
            "deliveries": sum(r["deliveries"] for r in results),
            "wall": wall,
            "send": [x for r in results for x in r["send"]],
            "fetch": [x for r in results for x in r["fetch"]],
            "client_cpu": sum(r["client_cpu"] for r in results),
            "server_cpu": sum(r["server_cpu"] for r in results),
            "per_agent": [r["sent"] for r in results],
        }

    def close(self) -> None:
        if self.killed:
            return
        for process in self.processes:
            process.stdin.close()  # type: ignore[union-attr]
        for process in self.processes:
            if process.wait(timeout=120) != 0:
                raise RuntimeError(f"{self.mode} worker failed with status {process.returncode}")
            process.stdout.close()  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# Projects


def new_project(root: Path, names: int) -> Path:
    """A Jetpack project whose DB knows ``names`` agents (so mail can reach them); returns the DB."""
    from jetpack.agents import AgentRegistry
    from jetpack.store import open_store

    db = jetpack_settings(root).db_path
    store = open_store(db)
    registry = AgentRegistry(store)
    for i in range(names):
        registry.remember(agent_name(i), [])
    store.close()
    return Path(db)


def _running_hub(root: Path) -> int:
    pid = hub_pid(root)
    if pid is None:
        raise RuntimeError("the agents' relays started no hub that this benchmark can find")
    return pid


def stdio_round(agents: int, seconds: float, paced_rate: float, *, hub: bool = False) -> dict[str, Any]:
    """a) saturated, b) paced, c) drain + the exactly-once check, all on one set of servers (with
    ``hub``: one hub and a relay per agent; the hub's CPU counts as server CPU)."""
    with temp_dir("mail-hub" if hub else "mail-stdio") as root:
        db = new_project(root, agents)
        t0 = time.perf_counter()
        workers = Workers("hub" if hub else "stdio", root, agents, agents, seed=1)
        startup = time.perf_counter() - t0
        hub_pid = _running_hub(root) if hub else None

        def run(interval: float = 0.0) -> dict[str, Any]:
            before = process_cpu_seconds(hub_pid) if hub_pid else 0.0
            result = workers.run(seconds, interval)
            if hub_pid:
                result["hub_cpu"] = process_cpu_seconds(hub_pid) - before
                result["server_cpu"] += result["hub_cpu"]
            return result

        try:
            saturated = run()
            paced = run(agents / paced_rate) if paced_rate else None
            fetched = [(agent_name(i), m) for i, r in enumerate(workers.command("drain")) for m in r["fetched"]]
        finally:
            workers.close()
        conn = raw_connect(db)
        try:
            rows = {(r, m) for r, m in conn.execute("SELECT recipient, message_id FROM deliveries")}
            messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        finally:
            conn.close()
        unique = set(fetched)
        check = {
            "messages": messages,
            "deliveries": len(rows),
            "fetched": len(fetched),
            "duplicates": len(fetched) - len(unique),
            "missing": len(rows - unique),
            "strays": len(unique - rows),
        }
        return {"saturated": saturated, "paced": paced, "check": check, "startup": startup}


def stdio_alone(peers: int, seconds: float) -> dict[str, Any]:
    """One stdio agent, the others known but idle: latency with no one to queue behind."""
    with temp_dir("mail-one") as root:
        new_project(root, peers)
        workers = Workers("stdio", root, 1, peers, seed=2)
        try:
            return workers.run(seconds)
        finally:
            workers.close()


def raw_round(agents: int, seconds: float) -> dict[str, Any]:
    with temp_dir("mail-raw") as root:
        db = new_project(root, agents)
        workers = Workers("raw", db, agents, agents, seed=3)
        try:
            result = workers.run(seconds)
        finally:
            workers.close()
        conn = raw_connect(db)
        try:
            counted = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        finally:
            conn.close()
        if counted != result["deliveries"]:
            raise RuntimeError(f"raw workers wrote {result['deliveries']} deliveries, the DB holds {counted}")
        return result


def service_round(agents: int, rounds: int, profiler: cProfile.Profile | None = None) -> dict[str, Any]:
    """The service functions in one thread: agent i%K sends to 1-3 others, then fetches its inbox."""
    from jetpack.mail import MailContext, NewMessage, Sender, fetch_inbox, send_mail
    from jetpack.store import open_store

    with temp_dir("mail-service") as root:
        store = open_store(new_project(root, agents))
        store.checkpoint_in_background()  # type: ignore[attr-defined]  # as in a server
        ctx = MailContext.for_settings(jetpack_settings(root), store)
        names = [agent_name(i) for i in range(agents)]
        rng = random.Random(4)
        sends: list[float] = []
        fetches: list[float] = []
        if profiler:
            profiler.enable()
        start = time.perf_counter()
        for n in range(rounds):
            me = names[n % agents]
            to = recipients(rng, [x for x in names if x != me])
            message = NewMessage(to=to, subject=f"{me} #{n}", body=body_for(rng, n))
            t0 = time.perf_counter()
            send_mail(ctx, Sender(me), message)
            t1 = time.perf_counter()
            fetch_inbox(ctx, me, limit=FETCH_LIMIT)
            fetches.append(time.perf_counter() - t1)
            sends.append(t1 - t0)
        wall = time.perf_counter() - start
        if profiler:
            profiler.disable()
        store.close()
        return {"sent": rounds, "wall": wall, "send": sends, "fetch": fetches}


# ---------------------------------------------------------------------------------------------


def rate(result: dict[str, Any]) -> float:
    return float(result["sent"] / result["wall"])


def p50_p99(values: list[float]) -> str:
    return f"{ms(percentile(values, 50))} / {ms(percentile(values, 99))}"


def stdio_rows(report: Report, label: str, result: dict[str, Any], *, targets: bool) -> None:
    messages = rate(result)
    send99, fetch99 = percentile(result["send"], 99), percentile(result["fetch"], 99)
    if targets:
        report.add(
            f"{label} messages/s",
            f"{messages:,.0f}",
            f">= {MESSAGES_TARGET:,.0f}",
            messages >= MESSAGES_TARGET,
        )
    else:
        report.add(f"{label} messages/s", f"{messages:,.0f}")
    report.add(f"{label} send_mail p50", ms(percentile(result["send"], 50)))
    report.add(f"{label} send_mail p99", ms(send99), f"<= {ms(P99_TARGET)}", send99 <= P99_TARGET)
    report.add(f"{label} fetch_inbox p50", ms(percentile(result["fetch"], 50)))
    report.add(f"{label} fetch_inbox p99", ms(fetch99), f"<= {ms(P99_TARGET)}", fetch99 <= P99_TARGET)
    sent = max(1, result["sent"])
    report.add(
        f"{label} CPU per round: servers / clients",
        f"{ms(result['server_cpu'] / sent)} / {ms(result['client_cpu'] / sent)}",
    )


MODE_TITLES = {
    "stdio": "a server process per agent (jetpack serve)",
    "hub": "one hub for all agents, a relay per agent (jetpack serve --hub)",
}


def mode_rows(
    report: Report, label: str, result: dict[str, Any], agents: int, seconds: float, paced_rate: float, raw: Any
) -> None:
    saturated, paced, check = result["saturated"], result["paced"], result["check"]
    report.section(
        f"[{label}] {MODE_TITLES[label]}: a) {agents} stdio agents, one DB, saturated, {seconds:g} s "
        f"(started in {result['startup']:.1f} s)"
    )
    stdio_rows(report, f"{label} x{agents}", saturated, targets=True)
    report.add(f"{label} x{agents} / raw x{agents} (messages/s)", f"{rate(saturated) / rate(raw):.1%}")
    # A closed loop keeps one call per agent in flight, so (Little's law) the mean call latency is
    # agents / calls per second: the p99 target cannot be met at saturation below this rate.
    calls = saturated["send"] + saturated["fetch"]
    report.add(
        f"mean call latency: measured / {agents} agents / calls per s",
        f"{ms(statistics.fmean(calls))} / {ms(agents / (2 * rate(saturated)))}",
    )
    report.add(
        f"messages/s at which {agents} closed-loop agents average {P99_TARGET * 1000:.0f} ms a call",
        f"{agents / (2 * P99_TARGET):,.0f}",
    )
    per_agent = saturated["per_agent"]
    report.add(
        "messages per agent: min / median / max",
        f"{min(per_agent)} / {statistics.median(per_agent):.0f} / {max(per_agent)}",
    )
    if paced is not None:
        report.section(f"[{label}] b) the same agents paced to {paced_rate:,.0f} messages/s offered, {seconds:g} s")
        stdio_rows(report, f"{label} paced", paced, targets=False)
    report.section(f"[{label}] c) after draining every inbox")
    ok = check["fetched"] == check["deliveries"] and not (check["duplicates"] or check["missing"] or check["strays"])
    report.add(
        "deliveries in the DB / fetched by recipients",
        f"{check['deliveries']:,} / {check['fetched']:,}",
        "equal, each once",
        ok,
    )
    report.add(
        "duplicates / missing / strays",
        f"{check['duplicates']} / {check['missing']} / {check['strays']} ({check['messages']:,} messages)",
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker_main(sys.argv[2:])
        return
    logging.getLogger("jetpack").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--agents", type=int, help="concurrent stdio agents (default 50; quick 10)")
    parser.add_argument("--seconds", type=float, help="length of each measured phase (default 10; quick 2)")
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=MESSAGES_TARGET,
        help="messages/s the agents offer together in phase b (default 1000; 0 skips the phase)",
    )
    parser.add_argument(
        "--mode",
        choices=["both", "stdio", "hub"],
        default="both",
        help="stdio: a server per agent; hub: jetpack serve --hub (one hub, a relay per agent); both (default)",
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile the service-level loop")
    args = parser.parse_args()
    agents = args.agents or (10 if args.quick else 50)
    if agents < 2:
        parser.error("--agents: at least 2 (each agent mails the others)")
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    service_rounds = 500 if args.quick else 3000
    wait_for_quiet(args.wait_idle)

    report = Report(f"bench_mail: send_mail + fetch_inbox, {agents} stdio agents ({'quick' if args.quick else 'full'})")

    raw = raw_round(agents, seconds)
    service = service_round(agents, service_rounds)
    alone = stdio_alone(agents, seconds / 2)
    modes = [("stdio", False), ("hub", True)] if args.mode == "both" else [(args.mode, args.mode == "hub")]
    rounds = {label: stdio_round(agents, seconds, args.paced_rate, hub=hub) for label, hub in modes}

    report.section(f"raw SQLite: {agents} processes inserting a message + its deliveries per transaction")
    report.add(f"raw x{agents} messages/s", f"{rate(raw):,.0f}")
    report.add(f"raw x{agents} send p50 / p99", p50_p99(raw["send"]))
    report.section(f"service functions, 1 thread, {service_rounds} rounds of send + fetch")
    report.add("service messages/s (send + fetch per message)", f"{rate(service):,.0f}")
    report.add("service send_mail p50 / p99", p50_p99(service["send"]))
    report.add("service fetch_inbox p50 / p99", p50_p99(service["fetch"]))
    report.section(f"one stdio agent alone (sending to {agents - 1} idle agents)")
    report.add("stdio x1 messages/s", f"{rate(alone):,.0f}")
    report.add("stdio x1 send_mail p50 / p99", p50_p99(alone["send"]))
    report.add("stdio x1 fetch_inbox p50 / p99", p50_p99(alone["fetch"]))
    report.add(
        "stdio x1 CPU per round: server / client",
        f"{ms(alone['server_cpu'] / alone['sent'])} / {ms(alone['client_cpu'] / alone['sent'])}",
    )
    for label, _ in modes:
        mode_rows(report, label, rounds[label], agents, seconds, args.paced_rate, raw)
    report.print()

    if args.profile:
        profiler = cProfile.Profile()
        service_round(agents, service_rounds, profiler)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(f"\n== cProfile of the service-level loop ({service_rounds} rounds of send + fetch), cumulative")
        print(out.getvalue())


if __name__ == "__main__":
    main()
