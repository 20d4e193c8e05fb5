"""The TUI's screens, one module each: login, main, help."""
