"""`measure_task` and its helpers stay readable: no function over 80 lines in the modules that
measure one point."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scfa_bench

PACKAGE = Path(scfa_bench.__file__).resolve().parent
MAX_FUNCTION_LINES = 80


@pytest.mark.parametrize("module", ["measure/point.py", "measure/prepared_call.py"])
def test_no_function_over_80_lines(module: str) -> None:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    long = {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"
