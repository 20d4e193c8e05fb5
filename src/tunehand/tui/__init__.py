"""The Textual app that `tunehand` opens: library, search, queue, now playing, devices.

It is a device (it plays) and a remote (it controls the session wherever it plays).
It never does I/O itself: everything goes through a `tunehand.tui.backend.Backend`
(`backend_live` on the device agent and the REST client, `backend_fake` in memory).
"""
