"""Where a virtual patient's seconds go, and what each hand-over rule could save.

    python benchmarks/patient_cost.py                         # ELIANA-like, 30 patients (~2 min)
    python benchmarks/patient_cost.py --trial lbcl_zuma1 --patients 12

Issue 30 asks for a trial patient at <= 0.3 s on one core. This runs the first patients of a
shipped trial one after the other in this process (1 thread, kernels loaded first), timing each
census interval of the lattice (12 simulated hours) and the systemic follow-up, and prints:

* the cost per patient, and how it splits between the lattice and the systemic follow-up;
* the cost of a lattice day (its spread: few CAR-T early, most at their peak);
* the share of the lattice's cost spent after day 1, 2, 3, 7 and 14: what handing over to the
  systemic model on a fixed day would save at most;
* the same for hand-over rules that look at the lattice (no CAR-T left, no antigen-positive
  cancer cell, CAR-T past their peak, little tumour left): the lattice time after the first
  census where the rule holds. The systemic model costs ~1 ms for a year, so these savings are
  upper bounds of what the rule buys (its readouts are another question: a rule that hands
  over while the lattice is still killing must give the systemic model the lattice's kill rate).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # measure the simulation package of this checkout

from patient_levers import TRIALS  # noqa: E402 - the shipped trials with a lattice phase
#: fixed hand-over days whose savings are printed
HAND_OVER_DAYS = (1, 2, 3, 7, 14)

Census = dict  # one census of the lattice: counts, "time_days", "seconds" since the last one


def lattice_course(scenario, seed: int) -> tuple[list[Census], float, int]:
    """The lattice censuses of one patient, each with the seconds spent since the previous
    one; the seconds of everything after the lattice (the systemic follow-up); the baseline
    tumour (cells on the lattice at t = 0)."""
    from simulation.model import CarTModel

    model = CarTModel(scenario, seed=seed, threads=1)
    censuses: list[Census] = []
    follow_up = {"seconds": 0.0}
    hand_over = model._follow_up  # the systemic model, run inside the lattice's last step

    def timed_hand_over() -> None:
        # the model's counts are its last census on the lattice until the systemic model runs
        follow_up["census"] = dict(model.counts)
        start = time.perf_counter()
        hand_over()
        follow_up["seconds"] += time.perf_counter() - start

    model._follow_up = timed_hand_over
    since = 0.0
    while model.running:
        start = time.perf_counter()
        before = follow_up["seconds"]
        model.step()
        since += time.perf_counter() - start - (follow_up["seconds"] - before)
        if model.step_index % model.record_every_steps == 0 or not model.running:
            counts = follow_up.get("census", model.counts)
            censuses.append({**counts, "seconds": since})
            since = 0.0
    return censuses, follow_up["seconds"], model.initial_tumor_cells


def car_t_total(census: Census) -> float:
    return census["car_t_cells"] + census["car_t_blood"]


#: hand-over rules: name -> predicate on (this census, the censuses so far, baseline tumour)
RULES: dict[str, Callable[[Census, list[Census], int], bool]] = {
    "no CAR-T left (lattice and blood)":
        lambda c, seen, base: c["time_days"] > 1 and car_t_total(c) == 0,
    "no antigen-positive cancer cell":
        lambda c, seen, base: c["tumor_cells"] == c["tumor_antigen_negative"],
    "CAR-T past their peak (< 90 % of it)":
        lambda c, seen, base: car_t_total(c) < 0.9 * max(map(car_t_total, seen)),
    "tumour <= 10 % of baseline":
        lambda c, seen, base: c["tumor_cells"] <= 0.1 * base,
    "tumour <= 1 % of baseline":
        lambda c, seen, base: c["tumor_cells"] <= 0.01 * base,
}


def saved_after(censuses: list[Census], baseline: int,
                rule: Callable[[Census, list[Census], int], bool]) -> float:
    """Lattice seconds after the first census where ``rule`` holds (0 if it never does)."""
    for index, census in enumerate(censuses):
        if rule(census, censuses[:index + 1], baseline):
            return sum(c["seconds"] for c in censuses[index + 1:])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trial", choices=TRIALS, default="b_all_eliana")
    parser.add_argument("--patients", type=int, default=30)
    args = parser.parse_args()

    import numba

    from simulation.model import CarTModel
    from simulation.study.sweep import plan_sweep
    from simulation.study.trial import read_trial_file

    numba.set_num_threads(1)
    path = ROOT / "configs" / "trials" / f"{args.trial}.yaml"
    runs = plan_sweep(path, read_trial_file(path, args.patients).sweep()).unique_runs
    warm = CarTModel(runs[0].scenario, seed=90_000, threads=1)  # load the kernels first
    for _ in range(5):
        warm.step()

    courses = [lattice_course(run.scenario, run.seed) for run in runs]
    lattice_s = [sum(c["seconds"] for c in censuses) for censuses, _, _ in courses]
    follow_up_s = [after for _, after, _ in courses]
    total = sum(lattice_s) + sum(follow_up_s)
    days = [censuses[-1]["time_days"] for censuses, _, _ in courses]
    # a census every 12 h (the trials' record_every_h), the last one possibly sooner
    per_day = sorted(c["seconds"] / (c["time_days"] - before["time_days"])
                     for censuses, _, _ in courses
                     for before, c in zip(censuses, censuses[1:]))
    print(f"{args.trial}: {len(runs)} patients on 1 thread, {total / len(runs):.2f} s each "
          f"(lattice {sum(lattice_s) / total:.0%}, systemic follow-up and tables "
          f"{sum(follow_up_s) / total:.0%})")
    print(f"lattice days per patient: median {statistics.median(days):.1f}, mean "
          f"{statistics.fmean(days):.1f} (at most {max(days):.0f})")
    print(f"seconds per lattice day: 10 % {per_day[len(per_day) // 10]:.2f}, median "
          f"{statistics.median(per_day):.2f}, 90 % {per_day[9 * len(per_day) // 10]:.2f}")
    lattice_total = sum(lattice_s)
    print("\nshare of the lattice's seconds a hand-over would save at most:")
    fixed_days = {f"on day {day}": lambda c, seen, base, day=day: c["time_days"] >= day
                  for day in HAND_OVER_DAYS}
    for name, rule in {**fixed_days, **RULES}.items():
        saved = sum(saved_after(censuses, baseline, rule)
                    for censuses, _, baseline in courses)
        print(f"  {name:<38}{saved / lattice_total:5.0%} -> "
              f"{(total - saved) / len(runs):.2f} s per patient")


if __name__ == "__main__":
    main()
