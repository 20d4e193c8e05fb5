"""Storage: tables, migrations and the Store that every server query goes through."""
