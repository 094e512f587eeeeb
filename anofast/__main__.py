"""``python -m anofast`` = the ``anofast`` command."""

from anofast.cli import main

raise SystemExit(main())
