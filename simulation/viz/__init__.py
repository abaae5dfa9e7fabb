"""Presentation layer: figures from tables and snapshots, animations, the interactive app (and
serving it), the figures of a fit. Figures read tables and snapshots, never a live model (the
app converts its model to snapshot arrays first)."""
