"""A scenario on a smaller (or larger) lattice: ``cartsim run CONFIG --scale F``.

``scale_scenario(scenario, F)`` keeps everything given per site, per cell or in physical units
(densities, fractions, rates, um) and multiplies by F what is given in numbers of sites or
cells: the lattice gets ~F times the sites (every side times F^(1/dimensions), rounded, at
least 3), and the cancer cells at t = 0, every dose given in cells and the blood volume the
pool stands for (so CAR-T per uL stay comparable) follow the lattice's actual change of
sites. Doses given as an E:T ratio need nothing. A quick look at a scenario is
``--scale 0.1``: a tenth of the sites and cells, about a tenth of the run time.
"""

from __future__ import annotations

from .checks import validate
from .errors import ConfigError
from .schema import LATTICE_SIDE_MAX, LatticeConfig, ScenarioConfig

#: the largest --scale: a 200 x 200 scenario becomes 2000 x 2000 sites
SCALE_MAX = 100.0


def check_scale(scale: object, shown: str) -> float:
    """``scale`` as a float if it is a number in (0, SCALE_MAX], else a ConfigError naming the
    file ``shown``."""
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not (
            0 < scale <= SCALE_MAX):
        raise ConfigError(f"{shown}: --scale: must be a number > 0 and <= {SCALE_MAX:g} (the "
                          f"factor on the lattice's sites; got {scale!r})")
    return float(scale)


def scale_scenario(scenario: ScenarioConfig, scale: float, shown: str) -> ScenarioConfig:
    """``scenario`` on a lattice with ~``scale`` times the sites, every count of cells scaled
    with the sites (see the module docstring). Scale 1 returns it unchanged."""
    if scale == 1.0:
        return scenario
    lattice = scenario.lattice
    per_side = scale ** (1.0 / lattice.dimensions)
    sides = {key: _side(value, per_side, key, shown) for key, value in
             (("width", lattice.width), ("height", lattice.height), ("depth", lattice.depth))
             if value is not None}
    data = scenario.model_dump()
    data["lattice"].update(sides)
    factor = LatticeConfig.model_validate(data["lattice"]).n_sites / lattice.n_sites
    data["tumor"]["initial_cells"] = max(1, round(scenario.tumor.initial_cells * factor))
    for dose in data["dosing"]["doses"]:
        if dose["cells"] is not None:
            dose["cells"] = max(1, round(dose["cells"] * factor))
    data["blood"]["volume_ul"] = scenario.blood.volume_ul * factor
    return validate(data, ScenarioConfig, f"{shown} (--scale {scale:g})")


def _side(sites: int, per_side: float, key: str, shown: str) -> int:
    side = max(3, round(sites * per_side))
    if side > LATTICE_SIDE_MAX:
        raise ConfigError(f"{shown}: --scale: lattice.{key} would be {side} sites, more than "
                          f"{LATTICE_SIDE_MAX}")
    return side

