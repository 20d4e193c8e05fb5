"""The offline cache: tracks and cover art kept on this machine, and what plays from them.

`store` owns the files and their index (SQLite, safe for several processes of one
config dir); `fetch` downloads into it (resumable with HTTP Range, checked against the
server's size and SHA-256); `last` keeps the session as this device last knew it, so
playback can go on while the server is unreachable.
"""
