"""Every module of the package imports on its own, first, in a fresh interpreter: an import
cycle hidden by the order in which the test suite happens to import things shows up here."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import tbptt

OPTIONAL = {"tbptt.integrations.lightning"}  # needs the lightning extra


def _modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(tbptt.__path__, "tbptt.")]
    return [n for n in names if n not in OPTIONAL and not n.endswith("__main__")]


def test_each_module_imports_first_in_a_fresh_interpreter() -> None:
    code = (
        "import importlib, sys\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('tbptt')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *_modules()], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
