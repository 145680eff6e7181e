"""``python -m tbptt``: the ``tbptt`` command (where the script is not on the PATH)."""

from tbptt.cli import main

raise SystemExit(main())
