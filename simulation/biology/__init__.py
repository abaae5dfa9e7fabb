"""Biology layer: a scenario's initial lattice and kernel parameters (``scenario``), the blood
pool, the microenvironment coupling cells and fields, and lattice observables."""
