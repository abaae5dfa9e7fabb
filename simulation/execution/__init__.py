"""Execution layer: running a study's simulations. The runner (runs -> tables, in memory or
into an output folder), the process pool (the one place that starts processes for runs),
progress bars in simulated days, the optional extras (what to install), finishing an output
folder (publish) and the folder run that ``cartsim run``, ``cartsim resume`` and
``Result.save`` share (folder_run: create, execute, interrupt, resume)."""
