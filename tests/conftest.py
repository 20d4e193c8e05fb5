"""Shared fixtures. Fixture modules live beside this file and are loaded as plugins."""

pytest_plugins = ["tests.fixtures_audio", "tests.fixtures_keyring", "tests.fixtures_server"]
