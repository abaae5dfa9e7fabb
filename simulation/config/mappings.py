"""Deep merging of config mappings (``extends:`` files, products that start from ``car_t``)."""

from __future__ import annotations


def merge_mappings(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` onto ``base``: mappings merge, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_mappings(merged[key], value)
        else:
            merged[key] = value
    return merged
