"""Audio playback behind the small `Player` protocol; mpv is imported in one module only."""
