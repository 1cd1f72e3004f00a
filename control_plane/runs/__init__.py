"""Runs: the RunService (``service``), the RunSupervisor that starts, refuses, cancels and records
every run (``supervisor``), the conversion of the engine's events into the run's record
(``events``), the cache lookup (``caching``) and what a run's templates resolve to
(``templates``). Modules are imported where used: this package's ``__init__`` imports nothing,
so importing one of them (the tracker imports ``events``) never pulls in the rest."""
