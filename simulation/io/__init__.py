"""Storage layer: atomic files, checkpoints, resumable output folders, provenance, lattice
snapshots and VTK files. It stores and reads back; it runs and draws nothing."""
