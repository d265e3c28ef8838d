"""Real ``tursodb`` libSQL servers for tests (``scripts/test`` installs turso@0.6.0 from npm into ``.tools/``).

    server = start_tursodb(tmp_path / "j.db")      # serves Hrana over HTTP on a free port
    store = open_store(server.url)
    server.kill()                                  # SIGKILL, as a crash would
    server.start()                                 # the same file on the same port

``tursodb`` opens its file exclusively, so two servers cannot share one; several Jetpack
processes share one server instead, as they would share a Turso database.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / ".tools" / "node_modules" / "@tursodatabase"
READY_TIMEOUT_SECONDS = 20.0


def tursodb_binary() -> Path | None:
    """The ``tursodb`` executable: ``$JETPACK_TURSODB``, the npm install in ``.tools/``, or the PATH."""
    if os.environ.get("JETPACK_TURSODB"):
        return Path(os.environ["JETPACK_TURSODB"])
    installed = sorted(TOOLS.glob("cli-*/tursodb"))
    if installed:
        return installed[0]
    found = shutil.which("tursodb")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class TursoServer:
    """One ``tursodb --sync-server`` process serving ``database`` on 127.0.0.1:``port``."""

    database: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.database.with_name(self.database.name + ".server.log")

    def start(self) -> TursoServer:
        """Start serving and wait until the server answers a query."""
        binary = tursodb_binary()
        if binary is None:
            raise RuntimeError("tursodb is not installed; run ./scripts/test (npm install --prefix .tools turso@0.6.0)")
        self.database.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(binary), "--quiet", str(self.database), "--sync-server", f"127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        with httpx2.Client(timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"tursodb exited with {self.process.returncode}: {self.log_path.read_text()}")
                try:
                    client.post(
                        f"{self.url}/v2/pipeline",
                        json={"requests": [{"type": "execute", "stmt": {"sql": "SELECT 1"}}]},
                    ).raise_for_status()
                    return self
                except httpx2.TransportError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"tursodb did not answer on {self.url}") from None
                    time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL: the server dies as in a crash, mid-request if one is running."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, how: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


def start_tursodb(database: Path, port: int | None = None) -> TursoServer:
    """A running ``tursodb`` serving ``database`` (created if missing) on ``port`` (a free one by default)."""
    if port is not None:
        return TursoServer(database, port).start()
    for _ in range(2):  # another process may take the free port before tursodb binds it
        try:
            return TursoServer(database).start()
        except RuntimeError:
            pass
    return TursoServer(database).start()


class LossyProxy:
    """A proxy in front of a server that can lose answers: each request reaches the server (and
    is applied there), but while ``lose_answers`` (any request) or ``lose_batch_answers`` (write
    batches) is above zero the client sees its connection close instead of the answer, as when
    the network fails after sending. Counts requests and batches; records request heads.

    ``tursodb`` closes every connection after its answer, so one request per connection."""

    def __init__(self, upstream: TursoServer) -> None:
        self.upstream = upstream
        self.lose_answers = 0
        self.lose_batch_answers = 0
        self.requests = 0
        self.batches = 0
        self.heads: list[str] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="lossy-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client:
            head, body = _read_request(client)
            with socket.create_connection(("127.0.0.1", self.upstream.port)) as upstream:
                upstream.sendall(head + body)
                answer = b"".join(iter(lambda: upstream.recv(65536), b""))
            batch = re.search(rb'"type"\s*:\s*"batch"', body) is not None
            with self._lock:
                self.requests += 1
                self.batches += int(batch)
                self.heads.append(head.decode("latin-1"))
                lose = self.lose_answers > 0 or (batch and self.lose_batch_answers > 0)
                if self.lose_answers > 0:
                    self.lose_answers -= 1
                elif lose:
                    self.lose_batch_answers -= 1
            if not lose:
                client.sendall(answer)


def _read_request(client: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n", body
