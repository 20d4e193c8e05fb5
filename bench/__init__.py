"""tunehand's benchmarks: `make bench` (or `python -m bench [MODULE...]`) prints the figures.

Speed goals are checked here, never by timed tests. Each benchmark module exposes
`run() -> list[Result]`; `bench.__main__` runs them in turn and prints a summary table.
Every benchmark starts what it needs (a real `tunehand serve`, a private keyring) on
loopback, runs a bounded loop, and stops everything it started, also on error.
"""
