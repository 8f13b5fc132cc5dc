"""Certificate lifetimes, in days: a module of their own so that the command line can show them
as defaults without importing ``cryptography`` (start-up is a feature)."""

from __future__ import annotations

__all__ = ["CA_DAYS", "CRL_DAYS", "LEAF_DAYS"]

CA_DAYS = 3650
LEAF_DAYS = 825
#: a CRL's default validity (``next_update``): a server refuses every client once it passes, so
#: a new CRL must be made and copied to the servers well before (weekly, say)
CRL_DAYS = 30
