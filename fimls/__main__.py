"""Allow ``python -m fimls``."""

from fimls.cli import main

raise SystemExit(main())
