"""`python -m tunehand` runs the command line."""

from tunehand.cli.main import main

raise SystemExit(main())
