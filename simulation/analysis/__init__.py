"""Analysis layer: pure rules on result tables. Outcomes (response, relapse, progression,
Kaplan-Meier), CAR-T kinetics (phases, contraction half-life), the killing-assay readout, a
trial patient's clinical endpoints, a cohort's readouts and calibration data matched to
simulated outputs."""
