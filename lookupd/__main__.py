"""Run the command-line interface: ``python -m lookupd``."""

from lookupd.cli import main

raise SystemExit(main())
