"""Engine layer: numpy + numba only. Cell codes and dtypes, units, the counter-based RNG, the
lattice, the kernels and the field solver. Imports nothing else from the package."""
