"""Who may call what, how much, and with what content: API keys, scopes and the `Principal`,
per-key limits and budgets (in process or on Redis), OIDC tokens, tenancy, the audit log, the
exposure rules of a keyless server, and moderation (prompt-injection detection and PII
redaction). Pure logic and storage; the API wires it into HTTP (`api/auth.py`, `api/quota.py`,
`api/access.py`, the guard in `api/service.py`). The response cache is `chatworks.cache`.
"""
