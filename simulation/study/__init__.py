"""Study layer: study designs over many runs. Sweeps (designs, Parquet per run), sweep reports
(CR probability, Sobol / Morris), virtual trials and sweeps over a trial, calibration to data
(fit: ABC-SMC) and the one-call API (api: simulation.run / load / Result / trial). Running the
runs is the execution layer's job."""
