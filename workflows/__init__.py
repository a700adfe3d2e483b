"""Accord's domain rules as pure Python: money, ledger, delinquency, policy and access.

Nothing here touches the web, the database or the network; the portal passes plain values
in and persists the decisions that come back.
"""
