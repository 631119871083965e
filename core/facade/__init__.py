"""The parts of `LaunchService` (core/service.py), one module per thing it owns.

`parts.Parts` holds the store, the change feed and the domain modules, each made
on first use; the command classes (`catalog`, `queues`, `runs`, `agents`) are its
subclasses, each a list of delegations to the domain modules it names, and
`LaunchService` is all of them together.
"""
