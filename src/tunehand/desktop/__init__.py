"""Desktop integration on the D-Bus session bus: MPRIS and notifications.

`Desktop` (in `service`) is what `receiver`, `resume` and the TUI attach to their agent:
it publishes `org.mpris.MediaPlayer2.tunehand` (`mpris`) and sends "now playing" and
"playback moved" notifications (`notify`). Without a session bus it stays off quietly.
dbus-fast is imported lazily, only when a bus address is set.
"""
