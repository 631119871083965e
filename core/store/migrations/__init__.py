"""Schema revisions: Alembic scripts in `versions/`, applied by `upgrade` when a store
is prepared (see `engine.prepare`).

This module stays free of Alembic: a process whose database is already at HEAD
reads one row and goes on, without paying for importing Alembic. `upgrade` (the
only module that imports it) runs only when there is something to do.

A new revision: add `versions/NNNN_what.py` (revision = "NNNN", down_revision the
previous one; ordinary `op.create_table` / `op.add_column` calls, written out, never
generated at run time), declare the same change in `schema.py`, and append its id to
REVISIONS. tests/core/test_migrations.py checks that the three agree.
"""

from __future__ import annotations

# Every revision this version knows, oldest first; a database stamped with any other
# was made by a newer launch-tui.
REVISIONS = ("0001", "0002", "0003", "0004")
HEAD = REVISIONS[-1]
VERSION_TABLE = "alembic_version"
