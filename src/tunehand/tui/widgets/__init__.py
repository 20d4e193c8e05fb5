"""The TUI's widgets: each one draws what its attributes say and posts messages up."""
