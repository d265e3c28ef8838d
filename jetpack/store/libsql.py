"""libSQL/Turso server adapter of the DataLayer port: Hrana over HTTP (``POST /v2/pipeline``).

Every call is one HTTP request and carries no baton, so nothing stays open on the server between
calls (``tursodb`` keeps no streams and runs every request on one shared connection, one at a
time; servers that do keep streams get a ``close`` at the end of each request). A read is an
``execute``. A write batch is a ``batch`` whose steps are ``BEGIN IMMEDIATE``, each statement on
condition that the step before it succeeded, ``COMMIT``, and a ``ROLLBACK`` that runs when the
``COMMIT`` did not: atomic within the request.

Why not the ``libsql-client`` package: it is archived upstream and speaks only the legacy ``/v1``
HTTP endpoints and Hrana over WebSocket, which ``tursodb`` does not serve. The part of the
protocol needed here is small: typed JSON values, ``execute``, and ``batch`` with conditions.

Parameters always travel positionally: ``tursodb`` 0.6 ignores ``named_args`` (every ``:name``
reads NULL), so ``:name`` placeholders are rewritten to ``?N`` once per distinct SQL text.

Network failures: reads are retried with jittered backoff for ``retry_seconds``; a write is
retried only while the connection cannot even be opened (nothing was sent). Once a write's
request may have reached the server it is never sent again, so a claim cannot apply twice;
the caller gets :class:`StoreUnreachable` saying the outcome is unknown.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx2

from jetpack.store.features import detect_features
from jetpack.store.port import (
    ConstraintViolation,
    GuardFailed,
    Params,
    Row,
    Statement,
    StoreBusy,
    StoreError,
    StoreFeatures,
    StoreUnreachable,
)

log = logging.getLogger(__name__)

_PIPELINE = "/v2/pipeline"
# Gateways in front of a server answer these while it is down or restarting.
_TRANSIENT_STATUS = frozenset({502, 503, 504})
_TOO_MANY_REQUESTS = 429
_BEGIN = 1  # the step of a write batch that opens its transaction (after the foreign-keys pragma)
_FIRST_PAUSE = 0.05
_MAX_PAUSE = 1.0

# Strings, quoted identifiers and comments are skipped whole, so only real placeholders match.
_SQL_TOKEN = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|\Z)"""
    r"""|(?P<param>[:@$][^\W\d]\w*|\?\d*)""",
    re.DOTALL,
)


def parse_url(url: str) -> tuple[str, str, str | None]:
    """(HTTP base URL, the URL without credentials for messages, an auth token found in it).

    ``libsql://host`` means ``https://host`` (``?tls=0`` for plain HTTP, as libSQL clients read
    it); an ``authToken`` query parameter is taken as the token and never shown."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    if scheme == "libsql":
        scheme = "http" if query.get("tls") == ["0"] else "https"
    elif scheme not in ("http", "https"):
        raise StoreError(f"{parts.scheme}:// is not a libSQL server URL; use libsql://, https:// or http://")
    if not parts.hostname:
        raise StoreError("the libSQL server URL has no host; e.g. libsql://my-db-me.turso.io")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{parts.port}" if parts.port else host
    path = parts.path.rstrip("/")
    token = query.get("authToken", [None])[0]
    return urlunsplit((scheme, netloc, path, "", "")), urlunsplit((parts.scheme, netloc, path, "", "")), token


class LibSQLDataLayer:
    """A DataLayer on a libSQL server (Turso Cloud, ``sqld``, ``tursodb --sync-server``).

    Safe to share between threads: the HTTP client pools keep-alive connections."""

    kind = "libsql"

    def __init__(
        self,
        url: str,
        auth_token: str | None = None,
        *,
        timeout_seconds: float = 30.0,
        connect_timeout_seconds: float = 5.0,
        retry_seconds: float = 5.0,
    ) -> None:
        base, self._location, url_token = parse_url(url)
        token = auth_token or url_token
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._endpoint = base + _PIPELINE
        self._retry_seconds = retry_seconds
        self._vector_functions: bool | None = None
        self._close_streams = True  # until the server says it has no such request
        self._closed = False
        self._client = httpx2.Client(
            headers=headers, timeout=httpx2.Timeout(timeout_seconds, connect=connect_timeout_seconds)
        )

    @property
    def location(self) -> str:
        return self._location

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        [result] = self._pipeline([{"type": "execute", "stmt": _statement(sql, params)}], idempotent=True)
        return self._read(result)

    def _read(self, result: dict[str, Any]) -> list[Row]:
        if result.get("type") != "ok":
            raise StoreError(f"{_message(result.get('error'))} (database {self._location})")
        return _rows(result["response"]["result"])

    def execute(self, sql: str, params: Params | None = None) -> list[Row]:
        return self.write([Statement(sql, params if params is not None else {})])[0]

    def write(self, statements: Sequence[Statement]) -> list[list[Row]]:
        if not statements:
            return []
        batch = {"type": "batch", "batch": {"steps": _transaction([_statement(s.sql, s.params) for s in statements])}}
        deadline = time.monotonic() + self._retry_seconds
        attempt = 0
        while True:
            [result] = self._pipeline([batch], idempotent=False)
            if result.get("type") != "ok":
                raise StoreError(f"{_message(result.get('error'))} (database {self._location})")
            try:
                return self._outcome(statements, result["response"]["result"])
            except _Busy as busy:
                # The batch rolled back, so sending it again is safe.
                if time.monotonic() >= deadline:
                    raise StoreBusy(
                        f"database {self._location} stayed locked for {self._retry_seconds:g}s: {busy}"
                    ) from None
            time.sleep(_pause(attempt))
            attempt += 1

    def schema_version(self) -> int:
        # One round trip (every open asks): the second read fails when the table does not exist yet.
        exists, version = self._pipeline(
            [
                {"type": "execute", "stmt": {"sql": "SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"}},
                {"type": "execute", "stmt": {"sql": "SELECT coalesce(max(version), 0) AS v FROM schema_migrations"}},
            ],
            idempotent=True,
        )
        if not self._read(exists):
            return 0
        return int(self._read(version)[0]["v"])

    def features(self) -> StoreFeatures:
        if self._vector_functions is None:
            try:
                self.query("SELECT vector_distance_cos(vector32('[1,0]'), vector32('[1,0]')) AS d")
                self._vector_functions = True
            except StoreUnreachable:
                raise
            except StoreError:
                self._vector_functions = False
        version = self.query("SELECT sqlite_version() AS v")[0]["v"]
        return detect_features(
            self, kind=self.kind, engine=f"libSQL server (SQLite {version})", vector_functions=self._vector_functions
        )

    def close(self) -> None:
        self._closed = True
        self._client.close()

    def _pipeline(self, requests: list[dict[str, Any]], *, idempotent: bool) -> list[dict[str, Any]]:
        """POST one pipeline; retry transient failures where that cannot apply a write twice."""
        if self._closed:
            raise StoreError("the DataLayer is closed")
        deadline = time.monotonic() + self._retry_seconds
        attempt = 0
        while True:
            # A trailing "close" ends the stream the server opened for this request (sqld and Turso
            # Cloud keep it otherwise until it times out); tursodb has no streams and refuses it.
            closing = self._close_streams
            sent = [*requests, {"type": "close"}] if closing else requests
            try:
                response = self._client.post(
                    self._endpoint, content=json.dumps({"requests": sent}, separators=(",", ":"))
                )
            except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as error:
                failure = f"cannot connect: {_reason(error)}"  # nothing was sent
            except httpx2.TransportError as error:
                if not idempotent:
                    raise StoreUnreachable(self._write_lost(_reason(error))) from error
                failure = f"lost the connection: {_reason(error)}"
            else:
                if closing and response.status_code >= 400 and "unknown variant `close`" in response.text:
                    self._close_streams = False  # the request failed to parse: nothing ran
                    continue
                if response.status_code == _TOO_MANY_REQUESTS:
                    failure = "HTTP 429: the server asks to slow down"  # refused, so nothing ran
                elif response.status_code not in _TRANSIENT_STATUS:
                    return self._results(response, len(sent))[: len(requests)]
                elif not idempotent:
                    raise StoreUnreachable(self._write_lost(f"HTTP {response.status_code}"))
                else:
                    failure = f"HTTP {response.status_code}"
            pause = _pause(attempt)
            attempt += 1
            if time.monotonic() + pause > deadline:
                raise StoreUnreachable(
                    f"DataLayer unreachable: the libSQL server at {self._location} did not answer ({failure}; "
                    f"{attempt} attempts in {self._retry_seconds:g}s). "
                    f"{'Nothing was read.' if idempotent else 'Nothing was written.'} "
                    "Check that the server is running and that JETPACK_DB_URL points at it, then call again."
                )
            time.sleep(pause)

    def _write_lost(self, reason: str) -> str:
        return (
            f"DataLayer unreachable: lost the connection to the libSQL server at {self._location} while a write "
            f"was in flight ({reason}). It may or may not have been applied; it was not sent again, so it cannot "
            "apply twice. Once the server answers, read the current state (e.g. get_task) before repeating it."
        )

    def _results(self, response: httpx2.Response, expected: int) -> list[dict[str, Any]]:
        status = response.status_code
        if status in (401, 403):
            raise StoreError(
                f"the libSQL server at {self._location} refused the credentials (HTTP {status}); "
                "set JETPACK_DB_AUTH_TOKEN to a valid token for this database"
            )
        if status == 404:
            raise StoreError(
                f"no Hrana endpoint at {self._location}{_PIPELINE} (HTTP 404); JETPACK_DB_URL must be the "
                "database's URL (libsql://, https:// or http://)"
            )
        if status != 200:
            raise StoreError(f"the libSQL server at {self._location} answered HTTP {status}: {response.text[:300]}")
        try:
            results = response.json()["results"]
        except (ValueError, KeyError, TypeError) as error:
            raise StoreError(f"unexpected answer from {self._location}: {response.text[:200]!r}") from error
        if not isinstance(results, list) or len(results) != expected:
            raise StoreError(f"unexpected answer from {self._location}: {len(results)} results for {expected}")
        return results

    def _outcome(self, statements: Sequence[Statement], outcome: dict[str, Any]) -> list[list[Row]]:
        """Each statement's rows; or the error of the step that stopped the batch (rolled back)."""
        results, errors = outcome["step_results"], outcome["step_errors"]
        first, count = _BEGIN + 1, len(statements)
        commit = first + count
        if len(results) != commit + 2 or len(errors) != commit + 2:
            raise StoreError(f"unexpected answer from {self._location}: {len(results)} step results")
        if errors[commit + 1] is not None:
            log.warning("ROLLBACK failed on %s: %s", self._location, _message(errors[commit + 1]))
        if errors[_BEGIN] is not None:
            raise self._failure(errors[_BEGIN], None, "BEGIN")
        for index in range(count):
            if errors[first + index] is not None:
                raise self._failure(errors[first + index], index, statements[index].sql)
        if errors[commit] is not None:  # deferred foreign keys are checked at COMMIT
            raise self._failure(errors[commit], count, "COMMIT")
        if results[commit] is None:
            raise StoreError(f"the libSQL server at {self._location} skipped COMMIT; nothing was written")
        return [_rows(results[first + index]) for index in range(count)]

    def _failure(self, error: dict[str, Any], index: int | None, sql: str) -> Exception:
        message, code = _message(error), str(error.get("code") or "")
        lowered = message.lower()
        if "database is locked" in lowered or "busy" in code.lower():
            return _Busy(message)
        if index is not None and ("constraint failed" in lowered or code.startswith("SQLITE_CONSTRAINT")):
            if "write_guard" in message:
                return GuardFailed(message, index)
            return ConstraintViolation(message, index)
        where = "" if index is None else f"statement {index} of the batch: {sql[:120]!r}; "
        return StoreError(f"{message} ({where}database {self._location}); nothing was written")


class _Busy(Exception):
    """The server's database was locked; the batch rolled back and may be sent again."""


def _pause(attempt: int) -> float:
    return float(min(_MAX_PAUSE, _FIRST_PAUSE * 2**attempt) * (0.5 + random.random()))


def _reason(error: Exception) -> str:
    return str(error) or type(error).__name__


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "error")
    return "the server reported an error without a message"


def _transaction(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Foreign keys on (as the embedded adapter has them; a no-op inside a transaction, and each
    request may get a fresh connection); BEGIN; each statement if the step before succeeded;
    COMMIT; ROLLBACK unless COMMIT ran. The ROLLBACK also requires our BEGIN to have succeeded:
    on ``tursodb`` every request shares one connection, and a failed BEGIN means a transaction
    that is not ours is open."""
    steps: list[dict[str, Any]] = [{"stmt": {"sql": "PRAGMA foreign_keys = ON"}}, {"stmt": {"sql": "BEGIN IMMEDIATE"}}]
    for statement in statements:
        steps.append({"stmt": statement, "condition": {"type": "ok", "step": len(steps) - 1}})
    commit = len(steps)
    steps.append({"stmt": {"sql": "COMMIT"}, "condition": {"type": "ok", "step": commit - 1}})
    steps.append(
        {
            "stmt": {"sql": "ROLLBACK"},
            "condition": {
                "type": "and",
                "conds": [{"type": "ok", "step": _BEGIN}, {"type": "not", "cond": {"type": "ok", "step": commit}}],
            },
        }
    )
    return steps


def _statement(sql: str, params: Params | None) -> dict[str, Any]:
    if params is None:
        return {"sql": sql}
    if isinstance(params, Mapping):
        text, names = _numbered(sql)
        try:
            args = [_value(params[name]) for name in names]
        except KeyError as missing:
            raise StoreError(f"no value for parameter :{missing.args[0]} in {sql[:120]!r}") from None
        return {"sql": text, "args": args}
    return {"sql": sql, "args": [_value(v) for v in params]}


@functools.lru_cache(maxsize=4096)
def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with each named placeholder replaced by ``?N`` (N by first appearance), and the names."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        param = match["param"]
        if param is None:
            return match[0]
        if param.startswith("?"):
            raise StoreError(f"statement mixes ? placeholders with named parameters: {sql[:120]!r}")
        if param[1:] not in names:
            names.append(param[1:])
        return f"?{names.index(param[1:]) + 1}"

    return _SQL_TOKEN.sub(number, sql), tuple(names)


def _value(value: Any) -> dict[str, Any]:
    """A Python value as a Hrana value: integers travel as strings (64 bits survive JSON)."""
    if value is None:
        return {"type": "null"}
    if isinstance(value, bool | int):
        return {"type": "integer", "value": str(int(value))}
    if isinstance(value, float):
        return {"type": "float", "value": value}
    if isinstance(value, str):
        return {"type": "text", "value": value}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"type": "blob", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    raise StoreError(f"cannot store a {type(value).__name__} value; use int, float, str, bytes or None")


def _decoded(value: dict[str, Any]) -> Any:
    kind = value["type"]
    if kind == "integer":
        return int(value["value"])
    if kind == "float":
        return float(value["value"])
    if kind == "text":
        return value["value"]
    if kind == "blob":
        data = value["base64"]
        return base64.b64decode(data + "=" * (-len(data) % 4))
    return None


def _rows(result: dict[str, Any]) -> list[Row]:
    columns = [column.get("name") or "" for column in result["cols"]]
    return [dict(zip(columns, (_decoded(v) for v in row), strict=True)) for row in result["rows"]]
