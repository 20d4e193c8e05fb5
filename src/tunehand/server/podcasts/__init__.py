"""Podcasts: the server's own safe fetches (`fetch`), feeds read into episodes (`feeds`),
and subscriptions refreshed on a timer (`service`)."""
