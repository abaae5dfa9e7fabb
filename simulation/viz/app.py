"""Interactive view: a Solara page (Mesa's run buttons) with the lattice, its oxygen and
suppressive-factor fields, and live burden and CAR-T curves.

    cartsim app                        # serves http://127.0.0.1:8765/
    # in Jupyter:
    from simulation.viz.app import page
    page

Sidebar: Reset / ▶ / Step (one STEP click advances ``STEP_MINUTES``, one simulated hour; ▶
repeats it), the simulated time in days, and the controls: scenario (b_all_cd19 / gbm_solid,
and two tumours with two antigens from configs/car_design/), dose (E:T at day 0), antigen
density (x the scenario's mean), antigen-negative fraction, suppressive-factor secretion (x the
scenario's; solid tumours), CAR-T kills before exhaustion, the product's receptor logic
(single, OR, AND, NOT), armour (dnTGFbR, PD-1 knockout, IL-12) and composition (CD4:CD8,
memory-like cells), seed; every slider shows its value and unit. Press Reset after changing
them. The lattice is drawn as one matplotlib image of site-class colours
(``lattice_plots.SITE_CLASSES``), not one patch per agent, and each field as one colour-mapped
image with a colour bar in its unit (shown when the scenario solves it, else marked off): a 200x200
lattice redraws in ~25 ms, its two fields in ~25 ms more (2 shared cores;
``measure_frame_rate``). Needs the ``viz`` extra (``pip install -e ".[viz]"``).
"""

from __future__ import annotations

import os
import time
import weakref
from io import BytesIO
from pathlib import Path

import warnings

import numpy as np
import solara
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image

with warnings.catch_warnings():
    # solara's rules-of-hooks lint warns about mesa 3.3's own components at import
    warnings.simplefilter("ignore")
    from mesa.visualization.solara_viz import ModelController
    from mesa.visualization.utils import update_counter

from ..config import ConfigError, load_scenario
from ..engine.constants import CAR_T
from ..model import CarTModel
from .lattice_plots import FIELD_STYLES, SITE_CLASSES, SITE_RGB, slice_label, tumour_slice_z
from .style import PALETTE
from ..io.snapshots import FIELD_NEUTRAL, SNAPSHOT_FIELDS, lattice_site_arrays, site_classes

#: scenarios offered in the view, by name (files in the configs folder); the last two name
#: two antigens each, for the product logic
SCENARIOS = ("b_all_cd19", "gbm_solid", "car_design/b_all_cd22_subclone",
             "car_design/gbm_epha2_car")
#: the product logic control: the scenario's own receptors, or one built from its tumour's
#: antigens (``product_receptors``)
PRODUCTS = ("as in the scenario", "single: first antigen", "OR: every tumour antigen",
            "AND: first antigen primes, second kills", "NOT: second antigen vetoes")
#: the armour control: none, or one ``car_t.armour`` switch at its documented effect size
ARMOURS = {"none": {}, "dnTGFbR": {"tgf_beta_resistance": 1.0},
           "PD-1 knockout": {"pd1_knockout": True}, "IL-12": {"il12": {}}}
#: the product composition control: the scenario's own, or one ``car_t.composition``
COMPOSITIONS = {"as in the scenario": None,
                "CD8 only": {"cd4_fraction": 0.0, "memory_like_fraction": 0.0},
                "1:1 CD4:CD8": {"cd4_fraction": 0.5, "memory_like_fraction": 0.0},
                "1:1, 50 % memory-like": {"cd4_fraction": 0.5, "memory_like_fraction": 0.5}}
#: model steps (dt_min each) per frame in ``measure_frame_rate``: 10 steps of 6 min, one
#: simulated hour, what one STEP click advances in the shipped scenarios (``steps_per_click``)
STEPS_PER_FRAME = 10
#: the antigen-negative fraction control's "keep the scenario's value" choice
SCENARIO_DEFAULT = "scenario default"


def config_dir() -> Path:
    """The folder with the scenario YAML files: $CARTSIM_CONFIG_DIR, ./configs, or the
    repository's configs/ next to the package."""
    candidates = [os.environ.get("CARTSIM_CONFIG_DIR"), Path.cwd() / "configs",
                  Path(__file__).resolve().parents[2] / "configs"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "b_all_cd19.yaml").is_file():
            return Path(candidate)
    raise ConfigError("cannot find the scenario files (b_all_cd19.yaml, gbm_solid.yaml): run "
                      "from the repository folder or set CARTSIM_CONFIG_DIR")


def product_receptors(product: str, antigens: list[str]) -> list[dict] | None:
    """``car_t.receptors`` for a ``PRODUCTS`` choice on a tumour carrying ``antigens`` (None:
    keep the scenario's). ConfigError if the logic needs two antigens and there is one."""
    if product == PRODUCTS[0]:
        return None
    if product == PRODUCTS[1]:
        return [{"antigen": antigens[0]}]
    if product == PRODUCTS[2]:
        return [{"antigen": name} for name in antigens]
    if len(antigens) < 2:
        raise ConfigError(f"product {product!r} needs a tumour with two antigens; pick a "
                          "car_design scenario")
    if product == PRODUCTS[3]:
        return [{"antigen": antigens[0], "role": "prime"}, {"antigen": antigens[1]}]
    if product == PRODUCTS[4]:
        return [{"antigen": antigens[0]}, {"antigen": antigens[1], "role": "veto"}]
    raise ConfigError(f"product must be one of {PRODUCTS}, not {product!r}")


class ViewModel(CarTModel):
    """A CarTModel built from the view's controls (keyword arguments only, as Mesa's Reset
    button builds it).

    ``antigen_scale`` multiplies the scenario's mean tumour antigen densities (every antigen),
    ``negative_fraction`` sets its first antigen's, ``suppression_scale`` its
    suppressive-factor secretion per cancer cell (no effect where the field is off);
    ``product`` picks the receptor logic (``PRODUCTS``), ``armour`` one ``ARMOURS`` switch,
    ``composition`` one ``COMPOSITIONS`` entry;
    ``record_every_h`` is short so the live curves update often. Further ``a__b=value``
    overrides pass through.
    """

    def __init__(self, scenario: str = "b_all_cd19", seed: int = 1,
                 effector_to_target: float = 0.01, antigen_scale: float = 1.0,
                 negative_fraction: float | str | None = None, max_kills: int = 10,
                 suppression_scale: float = 1.0, product: str = PRODUCTS[0],
                 armour: str = "none", composition: str = "as in the scenario",
                 record_every_h: float = 2.0,
                 threads: int | None = None, **kwargs) -> None:
        if scenario not in SCENARIOS:
            raise ConfigError(f"scenario must be one of {SCENARIOS}, not {scenario!r}")
        if armour not in ARMOURS:
            raise ConfigError(f"armour must be one of {tuple(ARMOURS)}, not {armour!r}")
        if composition not in COMPOSITIONS:
            raise ConfigError(f"composition must be one of {tuple(COMPOSITIONS)}, not "
                              f"{composition!r}")
        mix = COMPOSITIONS[composition]
        path = config_dir() / f"{scenario}.yaml"
        base = load_scenario(path)
        suppression = base.microenvironment.suppression
        tumor = base.tumor
        # one antigen: tumor.antigen; several: tumor.antigens.<name>
        keys = ({"antigen": tumor.antigen} if tumor.antigens is None else
                {f"antigens__{name}": dist for name, dist in tumor.antigens.items()})
        first_key = next(iter(keys))
        receptors = product_receptors(product, list(tumor.antigen_distributions))
        settings = {
            "dosing__doses": [{"day": 0.0, "effector_to_target": float(effector_to_target)}],
            **{f"tumor__{key}__mean_molecules_per_cell":
               float(dist.mean_molecules_per_cell * antigen_scale) for key, dist in keys.items()},
            f"tumor__{first_key}__negative_fraction": (
                keys[first_key].negative_fraction
                if negative_fraction in (None, SCENARIO_DEFAULT) else float(negative_fraction)),
            **({} if receptors is None else {"car_t__receptors": receptors}),
            **{f"car_t__armour__{key}": value for key, value in ARMOURS[armour].items()},
            **{f"car_t__composition__{key}": value for key, value in (mix or {}).items()},
            "car_t__max_kills": int(max_kills),
            "microenvironment__suppression__secretion_per_cancer_cell_per_min":
                float(suppression.secretion_per_cancer_cell_per_min * suppression_scale),
            "time__record_every_h": float(record_every_h),
            **kwargs,  # further a__b=value overrides (named kwargs: mesa checks that name)
        }
        super().__init__(base, seed=int(seed), threads=threads, **settings)
        self.scenario_name = scenario


# ---------------------------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------------------------
#: per model: the z index of the plane a 3D view draws, fixed at its first picture
_VIEW_Z: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def view_z(model: CarTModel) -> int | None:
    """The z index of the xy plane the view draws of a 3D model (None in 2D): the slice through
    the tumour (``lattice_plots.tumour_slice_z``, as plots draw it) when the model is first drawn,
    then kept, so the picture does not jump between planes while the tumour changes."""
    if model.lattice.dimensions == 2:
        return None
    if model not in _VIEW_Z:
        _VIEW_Z[model] = tumour_slice_z(site_classes(**lattice_site_arrays(model)))
    return _VIEW_Z[model]


def view_plane(model: CarTModel, values: np.ndarray) -> np.ndarray:
    """What the view draws of a grid of ``model``: a 2D grid as it is, the ``view_z`` plane
    of a 3D grid."""
    return values if values.ndim == 2 else values[view_z(model)]


def lattice_classes(model: CarTModel) -> np.ndarray:
    """Site-class codes (ny, nx) of the model's lattice now (3D: its ``view_z`` plane)."""
    return view_plane(model, site_classes(**lattice_site_arrays(model)))


def shown_fields(model: CarTModel) -> list[str]:
    """The fields of ``SNAPSHOT_FIELDS`` (oxygen, suppression) the model's scenario solves."""
    env = model.config.microenvironment
    return [name for name in SNAPSHOT_FIELDS if getattr(env, name).enabled]


class LatticeRenderer:
    """Draws the lattice as one matplotlib imshow of site-class colours, fast.

    Axes, ticks and labels are drawn once into a background; each frame restores it and draws
    only the image and the title (blitting), then encodes a PNG with light compression:
    ~10-20 ms for a 200x200 lattice instead of ~100 ms for a fresh figure.
    """

    def __init__(self, shape: tuple[int, int], spacing_um: float, size_in: float = 5.0,
                 dpi: int = 100, axes_rect: tuple[float, float, float, float] = (
                     0.15, 0.1, 0.8, 0.8)) -> None:
        ny, nx = shape
        mm = spacing_um / 1000.0
        self.figure = Figure(figsize=(size_in, size_in * min(1.5, max(0.5, ny / nx))), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.figure)
        ax = self.figure.add_axes(axes_rect)
        self.image = ax.imshow(np.zeros((ny, nx, 3), np.uint8), origin="lower",
                               interpolation="nearest", extent=(0, nx * mm, 0, ny * mm))
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
        self.title = ax.set_title(" ")
        self.axes = ax
        self._capture_background()

    def _capture_background(self) -> None:
        """Draw everything but the image and title once, and keep it for blitting (the title
        is blanked, not hidden: a hidden title is not placed)."""
        title = self.title.get_text()
        self.title.set_text(" ")
        self.image.set_visible(False)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)
        self.image.set_visible(True)
        self.title.set_text(title)

    def render(self, rgb: np.ndarray, title: str) -> np.ndarray:
        """The figure with this lattice picture as an (h, w, 4) uint8 RGBA array (a view)."""
        self.canvas.restore_region(self.background)
        self.image.set_data(rgb)
        self.title.set_text(title)
        self.axes.draw_artist(self.image)
        self.axes.draw_artist(self.title)
        return np.asarray(self.canvas.buffer_rgba())

    def png(self, rgb: np.ndarray, title: str) -> bytes:
        """The rendered figure as PNG bytes."""
        buffer = BytesIO()
        Image.fromarray(self.render(rgb, title)).save(buffer, format="png", compress_level=1)
        return buffer.getvalue()


class FieldRenderer(LatticeRenderer):
    """Draws one diffusing field like ``LatticeRenderer`` draws the lattice, through a colour
    map lookup table (no matplotlib normalisation per frame), with a colour bar in the field's
    unit from 0 to ``vmax``. The colour bar only grows: when the field exceeds it, it is
    redrawn up to the next round number (``_nice_ceiling``; rare, so frames stay cheap).
    """

    def __init__(self, shape: tuple[int, int], spacing_um: float, label: str, unit: str,
                 cmap: str, vmax: float, size_in: float = 3.0, dpi: int = 100) -> None:
        self.label, self.unit, self.cmap = label, unit, cmap
        self.vmax = _nice_ceiling(vmax)
        self.lut = (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)
        self._colour_bar_axes = None
        # a square lattice fills 0.54 of the width, centred at mid-height: the bar matches it
        super().__init__(shape, spacing_um, size_in, dpi, axes_rect=(0.19, 0.17, 0.54, 0.66))

    def _capture_background(self) -> None:
        if self._colour_bar_axes is None:
            self._colour_bar_axes = self.figure.add_axes((0.76, 0.23, 0.04, 0.54))
        self._colour_bar_axes.clear()
        self.figure.colorbar(ScalarMappable(Normalize(0.0, self.vmax), self.cmap),
                             cax=self._colour_bar_axes, label=self.unit)  # title: the field
        self._colour_bar_axes.tick_params(labelsize=8)
        super()._capture_background()

    def colours(self, values: np.ndarray) -> np.ndarray:
        """(ny, nx, 3) uint8 colours of field ``values`` (in the field's unit)."""
        top = float(values.max())
        if top > self.vmax:
            self.vmax = _nice_ceiling(top)
            self._capture_background()
        codes = np.clip(values * (255.0 / self.vmax), 0.0, 255.0).astype(np.uint8)
        return self.lut[codes]


def _nice_ceiling(value: float) -> float:
    """The smallest m x 10^k (m in 1, 1.5, 2, 3, 4, 5, 6, 8) at or above ``value`` (> 0)."""
    power = 10.0 ** np.floor(np.log10(value))
    return float(next(m * power for m in (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
                      if m * power >= value * (1 - 1e-12)))


_RENDERERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FIELD_RENDERERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def lattice_png(model: CarTModel) -> bytes:
    """The model's lattice now, as the PNG the view shows (renderer cached per model)."""
    renderer = _RENDERERS.get(model)
    if renderer is None:
        renderer = LatticeRenderer(model.lattice.shape[1:], model.lattice.spacing_um)
        _RENDERERS[model] = renderer
    z = view_z(model)
    plane = "" if z is None else f", {slice_label(z, model.lattice.spacing_um)}"
    title = (f"{model.config.name}{plane}: day {model.time_min / 1440:.2f}, "
             f"{model.tumor_cells} cancer cells")
    return renderer.png(SITE_RGB[lattice_classes(model)], title)


def field_pngs(model: CarTModel) -> dict[str, bytes]:
    """The fields the scenario solves (``shown_fields``) now, as PNGs, by field name."""
    renderers = _FIELD_RENDERERS.get(model)
    if renderers is None:
        renderers = {}
        for name in shown_fields(model):
            label, cmap = FIELD_STYLES[name]
            start = max(float(model.lattice.grid(name).max()), FIELD_NEUTRAL[name], 1e-6)
            renderers[name] = FieldRenderer(model.lattice.shape[1:], model.lattice.spacing_um,
                                            label, SNAPSHOT_FIELDS[name], cmap, start)
        _FIELD_RENDERERS[model] = renderers
    return {name: renderer.png(renderer.colours(view_plane(model, model.lattice.grid(name))),
                               renderer.label)
            for name, renderer in renderers.items()}


def curves_figure(model: CarTModel) -> Figure:
    """Cancer and CAR-T cells (log scale) vs days, from the model's DataCollector."""
    df = model.datacollector.get_model_vars_dataframe()
    fig = Figure(figsize=(5.0, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(df["time_days"], df["tumor_cells"], color=PALETTE[1], lw=2, label="cancer cells")
    ax.plot(df["time_days"], df["car_t_effector"], color=PALETTE[0], lw=2,
            label="CAR-T effector")
    ax.plot(df["time_days"], df["car_t_exhausted"], color=PALETTE[5], lw=1.5,
            label="CAR-T exhausted")
    ax.plot(df["time_days"], df["car_t_memory"], color=PALETTE[2], lw=1.5, label="CAR-T memory")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(1.0, float(df["time_days"].max())))
    ax.set_xlabel("time since start (days)")
    ax.set_ylabel("cells (count, log scale)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    return fig


@solara.component
def LatticeView(model: CarTModel):
    """The lattice picture, redrawn at every update of the view."""
    update_counter.get()
    with solara.Column():
        solara.Image(lattice_png(model), format="png", classes=["cartsim-lattice"])
        Legend()


@solara.component
def Legend():
    """The fixed legend of site colours (HTML swatches: no figure to redraw)."""
    items = "".join(
        f'<span style="display:inline-block;margin:2px 10px 2px 0;">'
        f'<span style="display:inline-block;width:12px;height:12px;background:{c.colour};'
        f'border:1px solid #888;vertical-align:middle;margin-right:4px;"></span>{c.label}</span>'
        for c in SITE_CLASSES)
    solara.HTML(tag="div", unsafe_innerHTML=items, style="font-size:12px;max-width:520px;")


@solara.component
def FieldsView(model: CarTModel):
    """Oxygen and suppressive factor, redrawn at every update; a note for fields that are off."""
    update_counter.get()
    images = field_pngs(model)
    off = [FIELD_STYLES[name][0] for name in SNAPSHOT_FIELDS if name not in images]
    with solara.Column():
        with solara.Row(style={"flex-wrap": "wrap"}):
            for name, png in images.items():
                solara.Image(png, format="png", classes=[f"cartsim-field-{name}"])
        if off:
            solara.Markdown(f"*{' and '.join(off)}: off in this scenario "
                            f"({model.config.name}); enable them under `microenvironment` in "
                            "its YAML.*")


@solara.component
def CurvesView(model: CarTModel):
    """Tumour burden and CAR-T curves, live."""
    update_counter.get()
    solara.FigureMatplotlib(curves_figure(model), format="png",
                            dependencies=[update_counter.value, id(model)])


@solara.component
def FieldsAndCurvesView(model: CarTModel):
    """The fields above the curves: one grid card, so that it sits beside the lattice (mesa's
    grid puts a third card under the first, over the lattice legend)."""
    with solara.Column():
        FieldsView(model)
        CurvesView(model)


#: the view's controls: one per ``ViewModel`` argument. Sliders say their current value with its
#: ``unit`` (``value_format``) on a line above them, so a short ``label`` leaves the slider
#: the card's whole width
MODEL_PARAMS = {
    "scenario": {"type": "Select", "value": "b_all_cd19", "values": list(SCENARIOS),
                 "label": "scenario"},
    "effector_to_target": {"type": "SliderFloat", "value": 0.01, "min": 0.002, "max": 0.1,
                           "step": 0.002, "label": "dose (E:T)", "format": "{:.3f}",
                           "unit": "CAR-T per cancer cell"},
    "antigen_scale": {"type": "SliderFloat", "value": 1.0, "min": 0.05, "max": 3.0,
                      "step": 0.05, "label": "antigen density", "format": "{:.2f}",
                      "unit": "x the scenario's mean"},
    "negative_fraction": {"type": "Select", "value": SCENARIO_DEFAULT,
                          "values": [SCENARIO_DEFAULT, "0", "0.1", "0.3", "0.5"],
                          "label": "antigen-negative cancer fraction"},
    "suppression_scale": {"type": "SliderFloat", "value": 1.0, "min": 0.0, "max": 3.0,
                          "step": 0.1, "label": "suppressive factor", "format": "{:.1f}",
                          "unit": "x the scenario's secretion (solid tumours)"},
    "max_kills": {"type": "SliderInt", "value": 10, "min": 1, "max": 30, "step": 1,
                  "label": "kills before exhaustion", "format": "{:d}",
                  "unit": "kills per CAR-T (car_t.max_kills)"},
    "product": {"type": "Select", "value": PRODUCTS[0], "values": list(PRODUCTS),
                "label": "product logic (two antigens: car_design scenarios)"},
    "armour": {"type": "Select", "value": "none", "values": list(ARMOURS),
               "label": "armour (car_t.armour)"},
    "composition": {"type": "Select", "value": "as in the scenario",
                    "values": list(COMPOSITIONS),
                    "label": "product composition (car_t.composition)"},
    "seed": {"type": "SliderInt", "value": 1, "min": 0, "max": 50, "step": 1, "label": "seed",
             "format": "{:d}", "unit": "(replicate r of a study uses seed + r)"},
}
#: the simulated time one STEP click advances (and the play button repeats), in minutes
STEP_MINUTES = 60.0


def slider_text(spec: dict, value: float) -> str:
    """The line above a slider: "dose (E:T): 0.010 CAR-T per cancer cell"."""
    return f"{spec['label']}: {spec['format'].format(value)} {spec['unit']}".rstrip()


def steps_per_click(model: CarTModel) -> int:
    """Model steps (``dt_min`` each) in one STEP click: ``STEP_MINUTES`` of simulated time."""
    return max(1, round(STEP_MINUTES / model.dt_min))


def clock_text(model: CarTModel) -> str:
    """The view's information line: "day 0.92 (22.0 h simulated, 220 steps of 6 min) ·
    12,571 cancer cells · 403 CAR-T"."""
    car_t = int((model.lattice.cells["cell_type"] == CAR_T).sum())
    return (f"day {model.time_min / 1440:.2f} ({model.time_min / 60:.1f} h simulated, "
            f"{model.step_index} steps of {model.dt_min:g} min) · {model.tumor_cells:,} "
            f"cancer cells · {car_t:,} CAR-T on the lattice")


@solara.component
def Control(name: str, spec: dict, parameters: solara.Reactive[dict]):
    """One control of ``MODEL_PARAMS``, writing its value into ``parameters`` (what Reset
    builds the next model from); a slider shows its current value and unit above it."""
    value = parameters.value.get(name, spec["value"])

    def set_value(new, name=name):
        parameters.value = {**parameters.value, name: new}

    if spec["type"] == "Select":
        solara.Select(spec["label"], values=spec["values"], value=value, on_value=set_value)
        return
    slider = solara.SliderFloat if spec["type"] == "SliderFloat" else solara.SliderInt
    with solara.Column(gap="0px", classes=[f"cartsim-control-{name}"]):
        solara.Text(slider_text(spec, value), classes=["cartsim-slider-value"],
                    style={"font-size": "13px"})
        slider("", value=value, on_value=set_value, min=spec["min"], max=spec["max"],
               step=spec["step"])


@solara.component
def Clock(model: CarTModel):
    """Simulated time in days (and hours and model steps), cancer cells and CAR-T, live."""
    update_counter.get()
    solara.Text(clock_text(model), classes=["cartsim-clock"])


@solara.component
def Page(model: CarTModel, play_interval_ms: int = 1):
    """The view: run buttons, controls and the simulated time in the sidebar; the lattice and,
    beside it, the fields above the curves. One STEP click advances ``STEP_MINUTES`` of
    simulated time (``steps_per_click``); Reset rebuilds the model from the controls."""
    current = solara.use_reactive(model)
    parameters = solara.use_reactive({name: spec["value"] for name, spec in MODEL_PARAMS.items()})
    play_interval = solara.use_reactive(play_interval_ms)
    steps = solara.use_reactive(steps_per_click(current.value))
    threads = solara.use_reactive(False)
    solara.use_effect(lambda: steps.set(steps_per_click(current.value)), [current.value])
    with solara.AppBar():
        solara.AppBarTitle(TITLE)
    with solara.Sidebar(), solara.Column():
        with solara.Card("Run"):
            ModelController(current, model_parameters=parameters, play_interval=play_interval,
                            render_interval=steps, use_threads=threads)
            solara.Text(f"STEP advances {STEP_MINUTES / 60:g} simulated hour ({steps.value} "
                        f"steps of {current.value.dt_min:g} min); ▶ repeats it. Reset "
                        "rebuilds the model from the controls below.",
                        style={"font-size": "12px"})
        with solara.Card("Simulated time"):
            Clock(current.value)
        with solara.Card("Controls (then Reset)"):
            for name, spec in MODEL_PARAMS.items():
                Control(name, spec, parameters)
    with solara.Columns([1, 1]):
        LatticeView(current.value)
        FieldsAndCurvesView(current.value)


#: the title of the view's page
TITLE = "cartsim: CAR-T vs blood and solid tumours"


def make_page(model: CarTModel | None = None, play_interval_ms: int = 1):
    """The view's element (``Page``) around ``model`` (default: B-ALL)."""
    return Page(model if model is not None else ViewModel(), play_interval_ms)


page = make_page()


# ---------------------------------------------------------------------------------------------
# speed of the view
# ---------------------------------------------------------------------------------------------
def measure_frame_rate(model: CarTModel, frames: int = 20,
                       steps_per_frame: int = STEPS_PER_FRAME) -> dict[str, float]:
    """Frames per second of the view's work: ``steps_per_frame`` model steps plus the lattice
    and field pictures rendered to PNG (what ``LatticeView`` and ``FieldsView`` send to the
    browser), ``frames`` times."""
    step_s = render_s = 0.0
    for _ in range(frames):
        start = time.perf_counter()
        for _ in range(steps_per_frame):
            model.step()
        middle = time.perf_counter()
        lattice_png(model)
        field_pngs(model)
        render_s += time.perf_counter() - middle
        step_s += middle - start
    return {"frames_per_s": frames / (step_s + render_s), "step_ms_per_frame":
            1000 * step_s / frames, "render_ms_per_frame": 1000 * render_s / frames}


__all__ = ["ARMOURS", "MODEL_PARAMS", "PRODUCTS", "SCENARIOS", "STEP_MINUTES", "FieldRenderer",
           "LatticeRenderer", "Page", "ViewModel", "clock_text", "field_pngs", "lattice_png",
           "make_page", "measure_frame_rate", "page", "shown_fields", "slider_text",
           "steps_per_click"]
