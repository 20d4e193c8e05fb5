"""tunehand: a terminal music client with handoff, and its sync server."""

__version__ = "0.1.0"
