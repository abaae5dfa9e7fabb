"""The optional parts of cartsim, and what to install when one is missing.

The base install runs and plots scenarios. Sweeps need the ``sweep`` extra (pyarrow: one
Parquet file per run; SALib: Sobol/Morris designs and indices), ``--scheduler`` the
``cluster`` extra (dask.distributed), ``cartsim app`` the ``viz`` extra (solara), ``cartsim
fit`` the ``fit`` extra (pyABC). Modules that
use them import them inside ``try`` at the top, and call ``require`` where a command starts,
so a missing package is one line naming what to install, never a traceback.
"""

from __future__ import annotations

from importlib.util import find_spec

from ..config import ConfigError

#: extra -> the import names it provides
EXTRAS = {"sweep": ("pyarrow", "SALib"), "cluster": ("distributed",), "viz": ("solara",),
          "trial": ("lifelines",), "fit": ("pyabc",)}


def missing(extra: str) -> list[str]:
    """The packages of ``extra`` that cannot be imported here."""
    return [name for name in EXTRAS[extra] if find_spec(name) is None]


def require(extra: str, what: str) -> None:
    """ConfigError saying how to install ``extra`` if any of its packages is missing;
    ``what`` names what needs it ("cartsim sweep")."""
    absent = missing(extra)
    if absent:
        raise ConfigError(f"{what} needs {' and '.join(absent)}, which the base install leaves "
                          f"out: pip install \"cartsim[{extra}]\" (in a source checkout: pip "
                          f"install -e \".[{extra}]\")")
