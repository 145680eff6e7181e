"""pytest: skip the doctests of optional integrations whose extra is not installed."""

import importlib.util

collect_ignore: list[str] = []
if importlib.util.find_spec("lightning") is None:  # pip install -e ".[lightning]"
    collect_ignore.append("src/tbptt/integrations/lightning.py")
