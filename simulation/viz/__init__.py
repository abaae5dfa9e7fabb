"""Presentation layer: figures from tables and snapshots, animations, the interactive app."""
