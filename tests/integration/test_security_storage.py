"""Tenancy, usage and the audit log in the real databases (SQLite and Postgres): searches see
only their owner's collections, another owner's rows are absent rather than forbidden, usage
adds up, and the audit log refuses to be changed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from chatworks.security import audit, budgets, keys
from chatworks.storage import documents as docs
from tests.contracts import test_index_contract
from tests.contracts.test_index_contract import add, unit

index = test_index_contract.index  # the same SQLite + Postgres index fixture


def owned_collection(index, name: str, owner: str) -> str:
    with Session(index.engine) as session, session.begin():
        docs.get_or_create_collection(session, name, owner)
    return name


def test_search_sees_only_its_owners_collections(index) -> None:
    owned_collection(index, "alice-notes", "alice")
    vector = unit((3, 1.0))
    add(index, ["the vault code is 1234"], [vector], collection="alice-notes")
    for owner, expected in (("alice", 1), (None, 1), ("bob", 0)):
        scoped = index.for_owner(owner)
        assert len(scoped.vector_search(vector, 5, "alice-notes")) == expected, owner
        assert len(scoped.keyword_search("vault code", 5, "alice-notes")) == expected, owner


def test_another_owners_rows_are_absent(index) -> None:
    owned_collection(index, "alice-notes", "alice")
    doc_id = add(index, ["private"], collection="alice-notes")
    with Session(index.engine) as session, session.begin():
        assert [c.name for c in docs.list_collections(session, "bob")] == []
        assert [c.owner for c in docs.list_collections(session, None)] == ["alice"]
        assert docs.collection_id(session, "alice-notes", "bob") is None
        assert docs.list_documents(session, "alice-notes", "bob") == []
        assert docs.get_document(session, doc_id, "bob") is None
        assert not docs.delete_document(session, doc_id, "bob")  # a guessed id: nothing happens
        assert not docs.delete_collection(session, "alice-notes", "bob")
        assert docs.get_document(session, doc_id, "alice").id == doc_id
        assert docs.delete_document(session, doc_id, "alice")


def test_keys_are_stored_found_and_revoked(index) -> None:
    with Session(index.engine) as session, session.begin():
        key, secret = keys.create_key(session, "k", ["chat", "admin"], models=["m"])
        assert keys.find_key(session, secret) == key
        assert keys.revoke_key(session, key.id).state() == "revoked"
        assert not keys.has_active_keys(session)


def test_usage_adds_up_per_key_and_period(index) -> None:
    with Session(index.engine) as session, session.begin():
        key, _ = keys.create_key(session, "k", ["chat"])
        for tokens in (5, 7):
            budgets.add_usage(session, key.id, "2026-12", tokens)
        budgets.add_usage(session, key.id, "2027-01", 1)
        assert budgets.usage(session, key.id, "2026-12") == budgets.Usage("2026-12", 12, 2)
        assert budgets.usage(session, key.id, "2027-01") == budgets.Usage("2027-01", 1, 1)
        assert budgets.usage(session, key.id, "2027-02") == budgets.Usage("2027-02", 0, 0)


@pytest.mark.parametrize("change", ["UPDATE audit_log SET outcome = 'ok'", "DELETE FROM audit_log"])
def test_the_audit_log_is_append_only(index, change: str) -> None:
    with Session(index.engine) as session, session.begin():
        audit.record(session, actor="cli", action="key.revoke", resource="k", outcome="denied")
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), index.engine.begin() as conn:
        conn.exec_driver_sql(change)
    with Session(index.engine) as session:
        [entry] = audit.entries(session)
    assert (entry.actor, entry.action, entry.outcome) == ("cli", "key.revoke", "denied")
