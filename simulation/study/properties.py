"""How a property of a virtual patient varies across a cohort: a distribution with its
literature source, drawn from a generator keyed by the cohort's seed and the property's name.

Trial files (``study.trial``) and CAR-T product files (``study.product``) both list
properties: the disease's and host's in the trial, the product's in its product file.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from ..config import Problems, StrictModel


class PropertyDistribution(StrictModel):
    """How one patient property varies across the cohort."""

    distribution: Literal["lognormal", "normal", "uniform", "loguniform"] = Field(
        description="lognormal: median, sigma (of ln); normal: mean, sd; uniform / loguniform: "
        "low, high.")
    median: float | None = Field(None, gt=0)
    sigma: float | None = Field(None, ge=0)
    mean: float | None = None
    sd: float | None = Field(None, ge=0)
    low: float | None = Field(None, description="Lower bound (uniform draws; else a clip).")
    high: float | None = Field(None, description="Upper bound (uniform draws; else a clip).")
    integer: bool = Field(False, description="Round to whole numbers.")
    per: str | None = Field(
        None, description="Another property's key: each patient's draw is divided by the "
        "patient's value of that property (a dose against a tumour burden: an E:T), then "
        "clipped to [low, high]. Lognormal or normal draws only.")
    source: Annotated[str, Field(min_length=1)] = Field(
        description="Literature source of the distribution.")

    @model_validator(mode="after")
    def _parameters(self) -> PropertyDistribution:
        needs = {"lognormal": ("median", "sigma"), "normal": ("mean", "sd"),
                 "uniform": ("low", "high"), "loguniform": ("low", "high")}[self.distribution]
        missing = [key for key in needs if getattr(self, key) is None]
        if missing:
            raise Problems([((key,), f"is needed by distribution {self.distribution}", None)
                            for key in missing])
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise Problems([(("low",), f"must be below high ({self.high:g})", self.low)])
        if self.distribution == "loguniform" and self.low <= 0:
            raise Problems([(("low",), "must be > 0 for loguniform", self.low)])
        if self.per is not None and self.distribution in ("uniform", "loguniform"):
            raise Problems([(("per",), "needs a lognormal or normal draw (low and high of a "
                             f"{self.distribution} draw bound the draw, not the quotient)",
                             self.per)])
        return self

    def describe(self) -> str:
        """``lognormal(median=80, sigma=0.4) in [30, 300], whole numbers``."""
        keys = {"lognormal": ("median", "sigma"), "normal": ("mean", "sd"),
                "uniform": ("low", "high"), "loguniform": ("low", "high")}[self.distribution]
        text = f"{self.distribution}({', '.join(f'{k}={getattr(self, k):g}' for k in keys)})"
        if self.per is not None:
            text += f" per `{self.per}`"
        if self.distribution in ("lognormal", "normal") and (self.low, self.high) != (None, None):
            text += f" in [{_bound(self.low)}, {_bound(self.high)}]"
        return text + (", whole numbers" if self.integer else "")

    def draw(self, rng: np.random.Generator, n: int, per_values: np.ndarray | None = None
             ) -> np.ndarray:
        """``n`` values; with ``per``, divided by ``per_values`` (the patients' values of that
        property) before the clip."""
        if self.distribution == "lognormal":
            values = self.median * np.exp(self.sigma * rng.standard_normal(n))
        elif self.distribution == "normal":
            values = self.mean + self.sd * rng.standard_normal(n)
        elif self.distribution == "uniform":
            values = rng.uniform(self.low, self.high, n)
        else:
            values = np.exp(rng.uniform(math.log(self.low), math.log(self.high), n))
        if per_values is not None:
            values = values / per_values
        values = np.clip(values, self.low, self.high)
        return np.round(values) if self.integer else values


def property_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one property: the cohort's seed and the key's name (so adding a
    property does not redraw the others)."""
    return np.random.default_rng([seed, int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)])


def _bound(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


def plain_number(value: float) -> int | float:
    """A drawn value as YAML writes it: a whole number as an int."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)
