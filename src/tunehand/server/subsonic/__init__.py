"""The Subsonic / OpenSubsonic API (`/rest/{method}`), for the apps that speak it.

Subsonic apps are devices without a channel: each authenticates with an application
password (`tunehand.server.app_passwords`) of its own device row. `routes` dispatches
a method to its handler; `responses` builds the `subsonic-response` envelope in JSON or
XML; `params` reads the request's parameters and credentials; `views` shapes library
rows as Subsonic objects; `browse`, `media` and `userdata` hold the methods.
"""
