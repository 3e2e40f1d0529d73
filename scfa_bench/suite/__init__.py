"""Suites: the schema (`schema`), YAML loading and validation (`parse`), the grid (`grid`)."""
