"""The web app: static files served by `tunehand serve` at `/` (see README "Web app")."""
