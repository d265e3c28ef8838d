"""Bearer tokens: stored only as hashes, shown once, listed without secrets, revocable, bound to one agent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jetpack.auth import TokenRegistry
from jetpack.cli.main import main
from jetpack.clock import ManualClock
from jetpack.errors import Conflict, InvalidInput, NotFound, NotPermitted
from jetpack.store import DataLayer

pytestmark = pytest.mark.both_adapters  # the token SQL on the embedded file and on a real tursodb server


@pytest.fixture
def tokens(store: DataLayer, clock: ManualClock) -> TokenRegistry:
    return TokenRegistry(store, clock)


def everything_stored(store: DataLayer) -> str:
    """Every value of every row of the tokens and events tables, as one string to search."""
    rows = store.query("SELECT * FROM tokens") + store.query("SELECT * FROM events")
    return json.dumps(rows, default=str)


def test_a_token_is_stored_only_as_its_hash(tokens: TokenRegistry, store: DataLayer) -> None:
    created = tokens.create(created_by="ops", agent="blue-heron", name="laptop")

    assert created.secret.startswith("jpt_") and len(created.secret) > 40
    row = store.query("SELECT * FROM tokens WHERE id = :id", {"id": created.record.id})[0]
    assert row["secret_hash"] == hashlib.sha256(created.secret.encode()).hexdigest()
    assert created.secret.startswith(row["prefix"]) and len(row["prefix"]) < len(created.secret) // 3
    assert created.secret not in everything_stored(store)


def test_creating_and_revoking_are_audited_without_the_secret(tokens: TokenRegistry, store: DataLayer) -> None:
    created = tokens.create(created_by="ops", agent="blue-heron")
    tokens.revoke(str(created.record.id), revoked_by="ops")

    events = store.query("SELECT actor, kind, note FROM events WHERE kind LIKE 'token_%' ORDER BY id")
    assert [(e["actor"], e["kind"]) for e in events] == [("ops", "token_created"), ("ops", "token_revoked")]
    assert events[0]["note"] == f"token {created.record.id} for blue-heron"
    all_events = json.dumps(store.query("SELECT * FROM events"))
    assert created.record.prefix not in all_events and created.secret not in all_events


def test_verify_accepts_an_active_token_and_records_its_use(tokens: TokenRegistry, clock: ManualClock) -> None:
    created = tokens.create(created_by="ops", agent="blue-heron")

    verified = tokens.verify(created.secret)

    assert verified is not None and verified.id == created.record.id and verified.agent == "blue-heron"
    assert verified.last_used_at is not None


@pytest.mark.parametrize("presented", ["", "Bearer", "jpt_short", "jpt_" + "x" * 43, "not-a-token" * 5])
def test_verify_refuses_unknown_and_malformed_tokens(tokens: TokenRegistry, presented: str) -> None:
    tokens.create(created_by="ops")
    assert tokens.verify(presented) is None


def test_a_revoked_token_is_refused(tokens: TokenRegistry) -> None:
    created = tokens.create(created_by="ops")
    revoked = tokens.revoke(created.record.prefix, revoked_by="ops")

    assert revoked.revoked_at is not None and revoked.revoked_by == "ops"
    assert tokens.verify(created.secret) is None
    with pytest.raises(Conflict, match="already revoked"):
        tokens.revoke(str(created.record.id), revoked_by="ops")


def test_tokens_are_found_by_id_prefix_or_secret(tokens: TokenRegistry) -> None:
    created = tokens.create(created_by="ops")
    record = created.record

    assert tokens.find(str(record.id)).id == record.id
    assert tokens.find(record.prefix).id == record.id
    assert tokens.find(created.secret).id == record.id
    with pytest.raises(NotFound):
        tokens.find("999")
    with pytest.raises(InvalidInput):
        tokens.find("blue-heron")


def test_a_bound_token_acts_only_as_its_agent(tokens: TokenRegistry) -> None:
    token = tokens.create(created_by="ops", agent="alice").record

    tokens.check_may_act_as(token, "alice")
    with pytest.raises(NotPermitted, match=r"bound to agent 'alice'.*cannot act as 'bob'"):
        tokens.check_may_act_as(token, "bob")


def test_a_name_bound_to_a_token_is_reserved_for_it(tokens: TokenRegistry) -> None:
    bound = tokens.create(created_by="ops", agent="alice")
    unbound = tokens.create(created_by="ops").record

    for other in (unbound, None):  # an unbound token, or an anonymous loopback client
        with pytest.raises(NotPermitted, match="reserved"):
            tokens.check_may_act_as(other, "alice")
        tokens.check_may_act_as(other, "carol")
    tokens.revoke(str(bound.record.id), revoked_by="ops")
    tokens.check_may_act_as(None, "alice")  # free again once its token is revoked


def test_a_token_bound_to_an_invalid_name_is_refused(tokens: TokenRegistry) -> None:
    with pytest.raises(InvalidInput):
        tokens.create(created_by="ops", agent="no spaces please")


def cli(project: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--project", str(project), "token", *args])


def test_cli_prints_the_secret_once_alone_on_stdout_and_lists_only_prefixes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JETPACK_AGENT", "ops")
    created = cli(project, "create", "--agent", "blue-heron", "--name", "ci runner")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("jpt_") and "\n" not in secret
    assert "jetpack token revoke 1" in created.stderr and "Authorization: Bearer" in created.stderr

    listed = cli(project, "list")
    listed_json = cli(project, "list", "--json")
    assert listed.exit_code == 0 and listed_json.exit_code == 0
    assert secret not in listed.output and secret not in listed_json.output
    assert "blue-heron" in listed.output and "ci runner" in listed.output and secret[:12] in listed.output
    [row] = json.loads(listed_json.stdout)
    assert row["agent"] == "blue-heron" and row["created_by"] == "ops" and row["revoked_at"] is None


def test_cli_revokes_by_prefix_and_then_lists_the_token_as_revoked(project: Path) -> None:
    secret = cli(project, "create").stdout.strip()

    revoked = cli(project, "revoke", secret[:12])
    again = cli(project, "revoke", secret[:12])

    assert revoked.exit_code == 0 and "revoked token 1" in revoked.output
    assert again.exit_code == 1 and "already revoked" in again.stderr
    assert "revoked" in cli(project, "list").output
    assert cli(project, "list", "--active").output.startswith("no tokens yet")
