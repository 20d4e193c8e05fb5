"""`tunehand mpd`: an MPD-protocol frontend over the account's session and library.

`protocol` is the pure part (argument parsing, ACK lines, song and status blocks, idle
subsystems from a state change); `frontend` holds the remote-only agent, the REST
client and the song-id map; `player`, `queue` and `library` answer the commands;
`server` runs the asyncio connections (framing, password, command lists, idle); `cli`
starts it all.
"""
