"""Study layer: the runner, the process pool, finishing output folders, sweeps, sweep reports
and the literature checks."""
