"""The agents' rules without a server: which tools are writes, when a call waits for a person,
how input items become the model's conversation, and that an approval left unanswered past its
time expires as denied (fail closed), on a real SQLite database."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy.orm import Session

from chatworks.agents.items import parse_input
from chatworks.agents.policy import ApprovalRule, McpTool, is_write, needs_approval
from chatworks.agents.store import add_approval, decide
from chatworks.security.keys import ApiKey
from chatworks.security.principal import Principal
from chatworks.settings import Settings
from chatworks.storage import open_database


def annotated(read_only=None, destructive=None):
    return SimpleNamespace(read_only_hint=read_only, destructive_hint=destructive)


def test_a_tool_is_a_write_unless_it_says_it_only_reads():
    assert not is_write(annotated(read_only=True), "list", [])
    assert is_write(None, "anything", [])  # says nothing: a write (fail closed)
    assert is_write(annotated(read_only=False), "save", [])
    assert is_write(annotated(read_only=True, destructive=True), "purge", [])
    assert is_write(annotated(read_only=True), "list", ["list"])  # the admin marked it


def tool(name: str, write: bool) -> McpTool:
    return McpTool("notes", name, "", {"type": "object"}, write)


def key(auto_approve=()) -> Principal:
    return Principal(ApiKey("k", "k", "cw-", "k", ("chat", "tools"), auto_approve=auto_approve))


@pytest.mark.parametrize(
    ("principal", "call", "rule", "tainted", "remembered", "asks"),
    [
        (key(), tool("read_note", False), ApprovalRule(), False, (), False),
        (key(), tool("write_note", True), ApprovalRule(), False, (), True),
        (key(("notes:write_*",)), tool("write_note", True), ApprovalRule(), False, (), False),
        (key(("notes:write_*",)), tool("write_note", True), ApprovalRule(), True, (), True),
        (key(), tool("write_note", True), ApprovalRule(), False, ("notes:write_note",), False),
        (key(), tool("write_note", True), ApprovalRule(), True, ("notes:write_note",), True),
        (key(), tool("read_note", False), ApprovalRule(always=True), False, (), True),
        (key(), tool("read_note", False), ApprovalRule.parse(
            {"always": {"tool_names": ["read_note"]}}), False, (), True),
        (key(("notes:*",)), tool("write_note", True), ApprovalRule.parse("never"), True, (), True),
    ],
)  # fmt: skip
def test_when_a_call_waits_for_a_person(principal, call, rule, tainted, remembered, asks):
    decided = needs_approval(principal, call, rule, tainted=tainted,
                             remembered=frozenset(remembered))  # fmt: skip
    assert decided is asks


def test_input_items_become_the_conversation():
    parsed = parse_input([
        {"role": "developer", "content": "be brief"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": {"ok": True}},
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
    ])  # fmt: skip
    assert [(t.role, t.content) for t in parsed.turns] == [
        ("system", "be brief"),
        ("user", "hi"),
        ("assistant", ""),
        ("tool", '{"ok": true}'),
    ]
    assert parsed.turns[2].calls == (("c1", "f", "{}"),) and parsed.turns[3].call_id == "c1"
    assert [a["approval_request_id"] for a in parsed.approvals] == ["mcpr_1"]
    with pytest.raises(ValueError, match="image"):
        parse_input([{"role": "user", "content": [{"type": "input_image"}]}])


def test_an_unanswered_approval_expires_as_denied_and_is_decided_once(tmp_path):
    engine = open_database(Settings(data_dir=tmp_path, _env_file=None))
    with Session(engine) as session, session.begin():
        add_approval(session, "late", "resp", "o", "notes", "write_note", "{}", timeout_s=0)
        add_approval(session, "now", "resp", "o", "notes", "write_note", "{}", timeout_s=600)
    with Session(engine) as session, session.begin():
        late = decide(session, "late", "o", approve=True, by="k", reason=None)
        first = decide(session, "now", "o", approve=True, by="k", reason=None)
        second = decide(session, "now", "o", approve=False, by="k2", reason=None)
        other_tenant = decide(session, "now", "someone-else", approve=True, by="x", reason=None)
    assert (late.approval.status, late.decided_now) == ("expired", False)
    assert (first.approval.status, first.decided_now) == ("approved", True)
    assert (second.approval.status, second.decided_now) == ("approved", False)  # unchanged
    assert other_tenant is None
