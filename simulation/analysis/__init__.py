"""Analysis layer: pure rules on result tables (outcomes, killing-assay readout)."""
