"""The music library: scanning folders, tags, search."""
