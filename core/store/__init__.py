"""Persistence: SQLAlchemy Core tables and engine set-up for SQLite and PostgreSQL."""
