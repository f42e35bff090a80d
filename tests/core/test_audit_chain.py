from __future__ import annotations

import json

import pytest

from mergegate.core.audit import GENESIS_HASH, seal, verify_chain
from mergegate.store.audit_log import AuditLog


def fields(i: int) -> dict:
    return {
        "event_id": f"e{i}",
        "timestamp": f"2026-01-01T00:00:0{i}Z",
        "agent_id": "mergegate/x",
        "action": "agent_run",
        "confidence_score": 0.5,
        "policy_applied": "p",
        "human_reviewer": None,
        "outcome": "ok",
    }


@pytest.fixture
def log(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(5):
        log.append(**fields(i))
    return log


def lines(log):
    return log.path.read_text().splitlines()


def test_intact_chain_verifies(log):
    report = log.verify()
    assert report.ok and report.entries == 5
    assert json.loads(lines(log)[0])["prev_hash"] == GENESIS_HASH


def test_edit_is_detected_at_that_line(log):
    ls = lines(log)
    entry = json.loads(ls[2])
    entry["outcome"] = "approved"
    ls[2] = json.dumps(entry)
    log.path.write_text("\n".join(ls) + "\n")
    report = log.verify()
    assert not report.ok and report.bad_line == 3 and "edited" in report.reason


def test_delete_is_detected(log):
    ls = lines(log)
    del ls[1]
    log.path.write_text("\n".join(ls) + "\n")
    report = log.verify()
    assert not report.ok and report.bad_line == 2


def test_reorder_is_detected(log):
    ls = lines(log)
    ls[1], ls[2] = ls[2], ls[1]
    log.path.write_text("\n".join(ls) + "\n")
    assert log.verify().bad_line == 2


def test_insert_is_detected(log):
    ls = lines(log)
    forged = seal(fields(9), json.loads(ls[1])["hash"])
    ls.insert(2, json.dumps(forged))
    log.path.write_text("\n".join(ls) + "\n")
    report = log.verify()
    assert not report.ok and report.bad_line == 4


def test_truncated_tail_is_detected_against_a_recorded_head(log):
    head = log.verify().head
    ls = lines(log)[:-1]
    log.path.write_text("\n".join(ls) + "\n")
    assert log.verify().ok  # the chain alone cannot see a missing tail...
    report = log.verify(expect_head=head)
    assert not report.ok and "removed from the end" in report.reason  # ...the recorded head can


def test_entries_need_the_required_fields():
    with pytest.raises(ValueError, match="human_reviewer"):
        seal({k: v for k, v in fields(0).items() if k != "human_reviewer"}, GENESIS_HASH)


def test_verify_chain_rejects_garbage():
    report = verify_chain(["{not json"])
    assert not report.ok and report.bad_line == 1
