"""Persistence: the schema, engine set-up for SQLite and PostgreSQL, and every SQL
statement the core runs, as named queries in one module per table family
(projects, jobs, queues, items, runs, output, agents, eventlog)."""
