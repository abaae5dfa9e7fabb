"""CAR-T products apart from the diseases they treat.

A product file (``configs/products/``) holds what a product brings to every patient who
receives it: ``values`` (dotted scenario key -> value, the same for every patient) and
``varies`` (dotted scenario key -> its distribution across patients: manufacturing and the
patient's own T cells, ``study.properties``), each distribution with its source. Its keys
are product keys only (``PRODUCT_KEY_PREFIXES``): the CAR-T on the lattice (``car_t.*``:
expansion, killing, exhaustion, persistence) and the CAR-T terms of the systemic follow-up
(``clinical.car_t_*``). The disease, the host and the lattice dose (an E:T on a lattice that
holds a few thousand cancer cells, not a dose per kg) stay with the trial's cohort.

A trial file names its product (``product: ../products/tisa_cel.yaml``); ``with_product``
joins the product's keys to the trial's, and ``cartsim trial TRIAL.yaml --product FILE``
gives the trial's cohort another product: a combination nobody fitted, a prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from ..config import ConfigError, Problems, StrictModel, display_path, read_yaml, validate
from .properties import PropertyDistribution

#: the scenario keys a product may set: its CAR-T and the systemic model's CAR-T terms
PRODUCT_KEY_PREFIXES = ("car_t.", "clinical.car_t_")


def is_product_key(key: str) -> bool:
    """True for a dotted scenario key that belongs to a CAR-T product."""
    return key.startswith(PRODUCT_KEY_PREFIXES)


class ProductFile(StrictModel):
    """A CAR-T product: its values for every patient and how it varies between patients."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    values: dict[str, Any] = Field(
        default_factory=dict, description="Dotted product key -> its value for every patient.")
    varies: dict[str, PropertyDistribution] = Field(
        default_factory=dict, description="Dotted product key -> its distribution across "
        "patients (with its source).")

    @model_validator(mode="after")
    def _product_keys(self) -> ProductFile:
        wanted = " or ".join(f"{prefix}*" for prefix in PRODUCT_KEY_PREFIXES)
        problems = [((section, key), f"is no product key (a product sets {wanted}; the "
                     "disease, the host and the dose belong to the trial)", None)
                    for section in ("values", "varies")
                    for key in getattr(self, section) if not is_product_key(key)]
        problems += [(("varies", key), "is also in values: a key is fixed or varies, not both",
                      None) for key in self.varies if key in self.values]
        if problems:
            raise Problems(problems)
        return self


def read_product(path: Path) -> tuple[ProductFile, dict[str, Any]]:
    """The validated product file at ``path`` and its mapping as written; ConfigError naming
    the file and the key path."""
    shown = display_path(path)
    if not path.is_file():
        raise ConfigError(f"{shown}: no such product file")
    data = read_yaml(path, shown)
    return validate(data, ProductFile, shown), data


def with_product(trial: dict[str, Any], trial_shown: str, product_path: Path,
                 swapped: bool) -> dict[str, Any]:
    """The trial mapping ``trial`` with the product at ``product_path`` joined: its ``values``
    join the trial's ``overrides``, its ``varies`` the trial's ``properties``, and ``product``
    holds the product file as messages show it. The trial itself may not set a product key.

    ``swapped``: the product replaces the one the trial names (``--product``): the cohort is
    renamed ``<trial>_<product>`` and loses its published values (those it models and those it
    does not) and predictors, which are of another product.
    """
    product, data = read_product(product_path)
    own = [f"{trial_shown}: {section}.{key}: is a key of the CAR-T product; set it in the "
           f"product file ({display_path(product_path)})"
           for section in ("overrides", "properties")
           for key in trial.get(section) or {} if is_product_key(key)]
    if own:
        raise ConfigError("\n".join(own))
    joined = {**trial,
              "overrides": {**(trial.get("overrides") or {}), **data.get("values", {})},
              "properties": {**(trial.get("properties") or {}), **data.get("varies", {})},
              "product": display_path(product_path)}
    if swapped:
        joined.update(name=f"{trial.get('name', 'trial')}_{product.name}", published={},
                      not_modelled={}, predictors={},
                      description=f"The cohort of {trial.get('name', 'the trial')} given "
                      f"{product.description or product.name} instead of its own product: a "
                      "prediction (no value of the product was fitted to this cohort; the "
                      "trial's published values are of another product and are not shown).")
    return joined
