"""account: fillfactor 50, so the daily collections run's UPDATE is heap-only (HOT)

The daily run writes every open account row once a day (days past due, the interest and fees
balances, ``version``, ``updated_at``); on almost every row no indexed column changes (the stage
does on about 1 % of them). PostgreSQL can then keep the new row version on the same page and
add nothing to the table's five indexes (a heap-only update), but only where the page has room
for it. At the default fillfactor (100) every page is full, so every new version went to another
page and into all five indexes, and the table settled at twice its live size anyway: after
each day's VACUUM, one half of its pages is empty and the other full, and the next day moves
every row across again. Filled to half, a page has room for a new version of each of its rows;
the previous day's versions are pruned when the page is next read (or vacuumed), so the next day
has room again. Measured (bench/README.md, 200,000 accounts): 98.7 % of the run's updates
heap-only every day, with or without a VACUUM between days, and the table's steady size the same
as at fillfactor 100 (9,089 pages against 8,888). A moderate fillfactor (70) only gets there
after several days of partly non-HOT updates, and ends larger (11,763 pages).

PostgreSQL only (SQLite has no fillfactor: nothing to do). ``SET (fillfactor = …)`` takes a
SHARE UPDATE EXCLUSIVE lock for an instant and rewrites nothing: the pages already there stay
full, so the first daily run after this migration moves each row once more (as every run did
before), into pages filled to half, and from the next day on the updates are heap-only. The
table is then larger than it needs to be (the old, emptied pages stay allocated and are reused by
new accounts); a rewrite (``VACUUM FULL account`` or pg_repack) in a maintenance window compacts
it. It is deliberately not done here: it locks the table against every read for the whole
rewrite, and VACUUM cannot run inside the migration's transaction.

Revision ID: e5f2a8b1c4d6
Revises: c3d8e1f4a7b9
Create Date: 2026-12-01 04:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "e5f2a8b1c4d6"
down_revision: str | None = "c3d8e1f4a7b9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 50


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE account SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE account RESET (fillfactor)")
