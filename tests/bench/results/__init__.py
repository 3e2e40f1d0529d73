"""Tests of the harness, mirroring the scfa_bench packages."""
