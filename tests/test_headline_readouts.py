"""The shipped trials' headline readouts stay consistent with what the trials published.

docs/trials.md compares 200 patients of each shipped trial with the published readouts; this
test guards the headline of each (the response rate a clinician reads first, and the severe
CRS rate of the solid trial, whose safety is its point) on the first 30 patients of the same
cohort, simulated here as `cartsim trial` would (316 s of one core for the three trials,
measured on the 2-core CI machine: the patients cost 3-4 s each, issue 30).

Tolerance: a cohort of 30 carries binomial sampling error (Wilson 95 % interval of about +-16
points around 70 %), so the test asks that the simulated interval overlap the published one
(the paper's 95 % interval, else a Wilson interval on its n), not that the point land inside.
ELIANA's CR of 86 % (200 patients) sits 3 points below the published upper bound of 89 %:
requiring the point inside would fail 38 % of 30-patient cohorts of an unchanged
model (binomial: 27 or more CRs of 30), overlap fails 0.002 % of them (16 or fewer); at the
74 % it had before its recalibration, 1.2 %. It fails for sure when the rate falls ~30
points (to ~50 %: 71 % of cohorts), the size of a missing or broken mechanism. ZUMA-1's ORR,
which misses by 10-19 points today, is not a headline here: its missing mechanism is named in
docs/trials.md.

ELIANA's relapse composition (15 of 16 CD19-negative; Wilson interval 72-99 %) is its second
headline, the fact the trial is best known for. The first 30 patients hold ~13 relapses; with
the 83 % CD19-negative of 200 patients, overlap fails when 6 or fewer of 13 are negative
(binomial: 0.3 % of cohorts); before the recalibration (45 % CD19-negative) it failed in 64 %
of them, and on the shipped cohort then (3 of 9) it did.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulation.analysis.trial import trial_readouts
from simulation.study.trial import published_interval, read_trial_file, run_cohort

TRIALS = Path(__file__).parent.parent / "configs" / "trials"
PATIENTS = 30

#: trial -> its headline readouts
HEADLINES = {"b_all_eliana": ("cr_rate", "relapse_negative"), "lbcl_zuma1": ("cr_rate",),
             "gastric_ct041": ("orr", "crs_grade3")}
#: headline readouts counted among some patients only (relapses), not all 30
AMONG_SOME = {"relapse_negative"}


@pytest.mark.validation
@pytest.mark.parametrize("name", sorted(HEADLINES))
def test_headline_readouts_overlap_the_published_intervals(name):
    path = TRIALS / f"{name}.yaml"
    trial = read_trial_file(path, PATIENTS)
    readouts = {r.name: r for r in trial_readouts(run_cohort(path, trial))}
    for readout_name in HEADLINES[name]:
        readout = readouts[readout_name]
        low, high = published_interval(trial.published[readout_name], readout.unit)
        assert readout.n == PATIENTS or readout_name in AMONG_SOME
        assert readout.low <= high and readout.high >= low, (
            f"{name} {readout_name}: simulated {readout.value:.0%} [{readout.low:.0%}, "
            f"{readout.high:.0%}] misses the published [{low:.0%}, {high:.0%}]")
