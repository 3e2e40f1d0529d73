"""Running a suite's plugin code, on consent: the one step that imports what a suite names.

Parsing a suite (`suite.parse`) only resolves its `module:function` and `file.py:function`
references; `register_suite_plugins` imports and registers them, and only when the caller
passes `allow` (the CLI's `--allow-plugins`). Plugins installed as entry points need no consent:
the user installed that code already.
"""

from __future__ import annotations

from pathlib import Path

from scfa_bench.errors import InputError
from scfa_bench.impls.plugins import is_reference, register_entry_points, register_reference
from scfa_bench.suite.impl_checks import check_registered
from scfa_bench.suite.plugin_refs import suite_folder
from scfa_bench.suite.schema import Suite


def register_suite_plugins(suite: Suite, *, allow: bool, base_dir: Path | None = None) -> list[str]:
    """Import and register the suite's `module:function` / `file.py:function` plugins (after
    the installed entry points), then check them as parsing checks built-ins (sweep axes, head
    dim, device, dtype: `suite.impl_checks.check_registered`). Returns the plugins' names.

    This runs the plugins' code, so it needs `allow` (the CLI's `--allow-plugins`): without
    it, a suite naming any plugin is an InputError naming each one. File references are
    relative to `base_dir`, by default the suite file's folder (the working directory for a
    suite without a file), where parsing resolved them.
    """
    register_entry_points()
    refs = [(i, name) for i, name in enumerate(suite.implementations) if is_reference(name)]
    if refs and not allow:
        named = ", ".join(f"`{name}` (implementations[{i}])" for i, name in refs)
        raise InputError(
            f"suite {suite.name} names plugin code that would run: {named}; pass "
            "--allow-plugins to run it"
        )
    folder = base_dir if base_dir is not None else suite_folder(suite.source)
    names = [register_reference(name, folder) for _, name in refs]
    check_registered(suite, names)
    return names
