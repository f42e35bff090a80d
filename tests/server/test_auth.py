"""Principals, tokens and refusals over the real HTTP API, on SQLite and PostgreSQL.

Every refusal must be a 403 with a reason in words *and* an audit entry; an agent can
never manage principals whatever its role; a principal's kind never changes; tokens are
stored only as hashes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from mergegate.store.db import normalize_url
from tests.server.conftest import GateServer

PEOPLE = {
    "alice": ("human", "admin"),
    "mo": ("human", "maintainer"),
    "dana": ("human", "contributor"),
    "bot": ("agent", "contributor"),
    "rootbot": ("agent", "admin"),
}


@pytest.fixture(scope="module")
def tokens(server: GateServer) -> dict[str, str]:
    made = {name: server.add_principal(name, kind, role) for name, (kind, role) in PEOPLE.items()}
    made["admin"] = server.admin_token
    return made


def refusals(server: GateServer, action: str, who: str) -> list[dict]:
    return [e for e in server.audit(action) if e["agent_id"] == who and e["outcome"] == "refused"]


def test_openapi_and_docs_are_served(server: GateServer):
    with server.client() as api:
        spec = api.get("/openapi.json").json()
        assert {"/api/users", "/api/repos", "/api/changes/{number}", "/api/audit/verify"} <= set(spec["paths"])
        assert api.get("/docs").status_code == 200
        assert api.get("/healthz").json()["ok"] is True


def test_missing_wrong_and_malformed_credentials_are_401(server: GateServer, tokens):
    with server.client() as api:
        r = api.get("/api/repos")
        assert r.status_code == 401
        assert r.json()["error"] == "unauthenticated"
        assert "WWW-Authenticate" in r.headers
        wrong = ("Bearer nope", "Bearer mgt_abc_" + "x" * 43, "Basic !!!", "Token abc", f"Bearer {tokens['bot']}x")
        for header in wrong:
            r = api.get("/api/repos", headers={"Authorization": header})
            assert r.status_code == 401, header
            assert "invalid credentials" in r.json()["reason"]
            assert "Traceback" not in r.text
    assert server.audit("auth.failed"), "wrong credentials leave an audit trail"


def test_revoked_token_is_refused(server: GateServer, tokens):
    with server.admin() as admin:
        issued = admin.post("/api/users/dana/tokens", json={"label": "short-lived"}).json()
    with server.client(issued["token"]) as api:
        assert api.get("/api/me").json()["name"] == "dana"
        r = api.delete(f"/api/tokens/{issued['id']}")  # owners may revoke their own
        assert r.status_code == 200, r.text
        assert r.json()["revoked_at"]
        assert api.get("/api/me").status_code == 401
    with server.client(tokens["dana"]) as api:
        assert api.get("/api/me").status_code == 200, "other tokens of the same principal keep working"


@pytest.mark.parametrize("who", ["mo", "dana", "bot", "rootbot"])
def test_only_human_admins_manage_principals(server: GateServer, tokens, who):
    with server.client(tokens[who]) as api:
        r = api.post("/api/users", json={"name": f"new-by-{who}", "kind": "human", "role": "admin"})
        assert r.status_code == 403
        body = r.json()
        assert body["error"] == "forbidden"
        assert "manage_principals" in body["reason"] or "manage principals" in body["reason"]
        assert api.get("/api/users").status_code == 403
        assert api.patch("/api/users/dana", json={"role": "admin"}).status_code == 403
    entries = refusals(server, "principal.create", who)
    assert entries and entries[0]["details"]["target"] == f"new-by-{who}"
    with server.admin() as admin:
        assert f"new-by-{who}" not in [u["name"] for u in admin.get("/api/users").json()]


def test_an_agent_can_never_mint_tokens_even_with_the_admin_role(server: GateServer, tokens):
    for agent in ("bot", "rootbot"):
        with server.client(tokens[agent]) as api:
            for target in ("dana", "admin", agent):
                r = api.post(f"/api/users/{target}/tokens", json={})
                assert r.status_code == 403, (agent, target)
                assert "agents can never manage principals" in r.json()["reason"]
        assert len(refusals(server, "token.create", agent)) >= 3
    with server.client(tokens["rootbot"]) as api:
        reason = api.post("/api/users", json={"name": "x1", "kind": "agent"}).json()["reason"]
        assert "its role admin does not change that" in reason


def test_a_human_may_mint_its_own_token_but_not_anothers(server: GateServer, tokens):
    with server.client(tokens["dana"]) as api:
        r = api.post("/api/users/dana/tokens", json={"label": "laptop"})
        assert r.status_code == 201, r.text
        assert r.json()["token"].startswith("mgt_")
        assert api.post("/api/users/mo/tokens", json={}).status_code == 403
        assert api.get("/api/users/mo/tokens").status_code == 403
        listed = api.get("/api/users/dana/tokens").json()
        assert "laptop" in [t["label"] for t in listed]
        assert all("token" not in t for t in listed), "listings never include a token"


def test_a_principals_kind_can_never_change(server: GateServer, tokens):
    with server.admin() as admin:
        for body in ({"kind": "human"}, {"kind": "human", "role": "maintainer"}, {"kind": "agent"}):
            r = admin.patch("/api/users/bot", json=body)
            assert r.status_code == 403, body
            assert "kind is fixed at creation" in r.json()["reason"]
        user = admin.get("/api/users/bot").json()
        assert (user["kind"], user["role"]) == ("agent", "contributor")
        # What may change does change.
        r = admin.patch("/api/users/bot", json={"role": "maintainer"})
        assert r.status_code == 200
        assert (r.json()["kind"], r.json()["role"]) == ("agent", "maintainer")
        admin.patch("/api/users/bot", json={"role": "contributor"})
    assert refusals(server, "principal.update", "admin")
    # And not behind the API's back either: the database refuses the update itself.
    engine = create_engine(normalize_url(server.database_url))
    try:
        with pytest.raises(Exception, match="kind is fixed at creation"), engine.begin() as conn:
            conn.execute(text("UPDATE principals SET kind = 'human' WHERE name = 'bot'"))
    finally:
        engine.dispose()


def test_precise_errors_for_bad_input(server: GateServer, tokens):
    with server.admin() as admin:
        cases = [
            ({"name": "x", "kind": "robot"}, 422, "invalid kind 'robot'"),
            ({"name": "x", "kind": "human", "role": "owner"}, 422, "invalid role 'owner'"),
            ({"name": "bad name", "kind": "human"}, 422, "invalid principal name"),
            ({"name": "mergegate", "kind": "agent"}, 422, "reserved"),
            ({"name": "x", "kind": "human", "email": "nope"}, 422, "invalid email"),
            ({"name": "dana", "kind": "human"}, 409, "already exists"),
            ({"kind": "human"}, 422, "name: Field required"),
            ({"name": "x", "kind": "human", "extra": 1}, 422, "extra"),
        ]
        for body, status, reason in cases:
            r = admin.post("/api/users", json=body)
            assert r.status_code == status, (body, r.text)
            assert reason in r.json()["reason"], (body, r.json())
        assert admin.get("/api/users/nobody").status_code == 404
        assert admin.patch("/api/users/dana", json={"name": "x"}).status_code == 422
        assert admin.post("/api/repos", json={"name": "../etc"}).status_code == 422
        assert admin.post("/api/repos", json={"name": "r", "source": "ext::sh -c id"}).status_code == 422
        assert admin.get("/api/changes", params={"state": "weird"}).status_code == 422
        names = [u["name"] for u in admin.get("/api/users").json()]
        assert "x" not in names


def test_the_last_human_admin_cannot_be_demoted(server: GateServer, tokens):
    with server.admin() as admin:
        # alice is an admin too, so demoting her is fine; then admin is the only one left.
        assert admin.patch("/api/users/alice", json={"role": "maintainer"}).status_code == 200
        r = admin.patch("/api/users/admin", json={"role": "maintainer"})
        assert r.status_code == 409
        assert "only human admin" in r.json()["reason"]
        assert admin.patch("/api/users/alice", json={"role": "admin"}).status_code == 200


def test_repositories_are_created_by_admins_only(server: GateServer, tokens):
    for who in ("mo", "bot", "rootbot"):
        with server.client(tokens[who]) as api:
            r = api.post("/api/repos", json={"name": f"by-{who}"})
            assert r.status_code == 403
    assert refusals(server, "repo.create", "rootbot")
    with server.client(tokens["alice"]) as api:
        r = api.post("/api/repos", json={"name": "by-alice", "default_branch": "trunk"})
        assert r.status_code == 201, r.text
        assert r.json()["default_branch"] == "trunk"
        assert api.post("/api/repos", json={"name": "by-alice"}).status_code == 409
    with server.client(tokens["bot"]) as api:
        assert "by-alice" in [r["name"] for r in api.get("/api/repos").json()]
        assert api.get("/api/audit/verify").status_code == 403
    assert not server.bare("by-bot").exists()


def test_tokens_are_stored_only_as_hashes(server: GateServer, tokens):
    engine = create_engine(normalize_url(server.database_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT secret_hash FROM api_tokens")).scalars().all()
            for token in tokens.values():
                assert hashlib.sha256(token.encode()).hexdigest() in rows
            # No column of any table holds a token in the clear.
            for table in inspect(conn).get_table_names():
                dump = "\n".join(str(row) for row in conn.execute(text(f"SELECT * FROM {table}")))
                for token in tokens.values():
                    secret = token.split("_", 2)[2]
                    assert secret not in dump, f"a token's secret is readable in {table}"
    finally:
        engine.dispose()
    if server.database_url.startswith("sqlite"):
        # The raw file, WAL included: not even a stray page holds a token.
        db_file = Path(server.database_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in db_file.parent.glob(f"{db_file.name}*"))
        assert raw
        for token in tokens.values():
            assert token.split("_", 2)[2].encode() not in raw


def test_the_audit_chain_verifies_after_all_of_it(server: GateServer, tokens):
    with server.admin() as admin:
        report = admin.get("/api/audit/verify").json()
    assert report["ok"], report
    assert report["entries"] > 20
