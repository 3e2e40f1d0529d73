"""Implementations: `base` (inputs and protocol), `registry`, one module per family.

Importing a family module registers its implementations; `registry.all_specs` imports them all.
"""
