"""Alembic revision scripts, loaded by file path (a package only so that they install)."""
