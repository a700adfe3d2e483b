"""Use cases. Each public function is one transaction: load, ask ``workflows``, persist, audit, commit.

Helpers that take part in a caller's transaction (``ledger.post``, ``audit.record``) never commit.
"""
