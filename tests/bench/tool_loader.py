"""Load a script of `tools/` as a module, for the tests of developer tools (they are scripts,
not part of the installed packages)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def load_tool(name: str) -> ModuleType:
    """`tools/<name>.py` as module `name`, registered in sys.modules (dataclasses look their
    module up there). `tools/` goes on sys.path, as when the script runs: tools import their
    shared siblings (`e2e_probe_points`)."""
    if str(TOOLS) not in sys.path:
        sys.path.append(str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
