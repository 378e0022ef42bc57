"""Who may call what, and how much: API keys and scopes, per-key limits and budgets, tenancy
and the audit log. Pure logic and storage; `api/auth.py` and `api/quota.py` wire it into HTTP.

Not here yet (issue 15): moderation, PII redaction, content logging, the response cache and the
threat model.
"""
