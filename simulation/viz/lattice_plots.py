"""Pictures of the lattice from snapshots (``simulation.io.snapshots``), never a live model.

``plot_snapshot`` (cancer by antigen level, normal, CAR-T by state, necrosis, stroma,
vessels), ``plot_snapshot_with_fields`` (beside its oxygen and suppressive-factor fields); for
3D lattices ``plot_orthogonal_slices`` (the xy, xz and yz planes through the tumour),
``plot_max_projection`` (cancer and CAR-T density like a two-channel confocal image, beside the
minimum projection of oxygen) and ``plot_points_3d`` (a 3D scatter for small cases). Given a
3D snapshot, ``plot_snapshot`` draws the xy slice through the tumour (``tumour_slice_z``). The
site classes and their colours (``SITE_CLASSES``) are shared with the app and animations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .style import figure_and_axes, finish, styled  # first: it picks matplotlib's backend

import matplotlib.pyplot as plt  # noqa: I001
import numpy as np
from matplotlib import patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, ListedColormap, Normalize, to_rgb
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy.ndimage import gaussian_filter

from ..io.snapshots import (FIELD_NEUTRAL, N_SITE_CLASSES, SITE_CANCER_HIGH, SITE_CANCER_LOW,
                            SITE_CANCER_NEGATIVE, SITE_CAR_T_EFFECTOR, SITE_CAR_T_EXHAUSTED,
                            SITE_CAR_T_MEMORY, SITE_EMPTY, SITE_NECROTIC, SITE_NORMAL_NEGATIVE,
                            SITE_NORMAL_POSITIVE, SITE_STROMA, SITE_VESSEL, SNAPSHOT_FIELDS,
                            site_classes, snapshot_field)


# ---------------------------------------------------------------------------------------------
# lattice snapshots
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SiteClass:
    """One colour of the lattice picture: its code in the class array, its label and colour."""

    code: int
    label: str
    colour: str


#: the fixed legend of lattice pictures: every class always shown, in code order (the codes
#: are ``snapshots.SITE_*``, where lattices map to them). Okabe-Ito colours for cells; the
#: tissue classes and necrosis, beyond those eight, differ from every cell colour in lightness
#: too, so they stay apart under every colour-vision deficiency: pale sand stroma (a background
#: tint), dark wine vessels, dark brown necrotic debris.
SITE_CLASSES = (
    SiteClass(SITE_EMPTY, "empty", "#FFFFFF"),
    SiteClass(SITE_CANCER_HIGH, "cancer, antigen high (>= CAR half-max)", "#D55E00"),
    SiteClass(SITE_CANCER_LOW, "cancer, antigen low", "#E69F00"),
    SiteClass(SITE_CANCER_NEGATIVE, "cancer, antigen negative", "#000000"),
    SiteClass(SITE_NORMAL_POSITIVE, "normal, antigen+ (on-target, off-tumour)", "#CC79A7"),
    SiteClass(SITE_NORMAL_NEGATIVE, "normal, antigen-", "#C8C8C8"),
    SiteClass(SITE_CAR_T_EFFECTOR, "CAR-T effector", "#0072B2"),
    SiteClass(SITE_CAR_T_EXHAUSTED, "CAR-T exhausted", "#56B4E9"),
    SiteClass(SITE_CAR_T_MEMORY, "CAR-T memory", "#009E73"),
    SiteClass(SITE_NECROTIC, "necrotic (hypoxic debris)", "#5C4033"),
    SiteClass(SITE_STROMA, "stroma (no cell)", "#E8DFB0"),
    SiteClass(SITE_VESSEL, "blood vessel", "#882255"),
)
assert [c.code for c in SITE_CLASSES] == list(range(N_SITE_CLASSES)), "SITE_CLASSES out of order"
SITE_CMAP = ListedColormap([c.colour for c in SITE_CLASSES], name="cartsim_sites")
#: the same colours as an (n_classes, 3) uint8 table, for fast RGB images (class -> colour)
SITE_RGB = np.array([[int(c.colour[i:i + 2], 16) for i in (1, 3, 5)] for c in SITE_CLASSES],
                    dtype=np.uint8)
#: how field panels draw each snapshot field: (title, colour map); units in SNAPSHOT_FIELDS
FIELD_STYLES = {"oxygen": ("oxygen", "cividis"), "suppression": ("suppressive factor", "magma")}
#: outline of necrotic sites on field panels; oxygen contour at the necrosis threshold
NECROTIC_OUTLINE = "#FFFFFF"
NECROSIS_CONTOUR = "#E69F00"


def site_legend_handles() -> list[Patch]:
    """Legend entries for every site class (fixed: the same legend on every picture)."""
    return [Patch(facecolor=c.colour, edgecolor="0.5", lw=0.5, label=c.label)
            for c in SITE_CLASSES]


def _site_legend(fig: plt.Figure) -> None:
    """The fixed site legend of ``site_legend_handles`` at the right of ``fig``."""
    fig.legend(handles=site_legend_handles(), loc="outside right upper", title="site",
               alignment="left")


def _snapshot_meta(snapshot) -> dict:
    """The mapping part of a snapshot: the snapshot itself, or {} for a bare array of classes."""
    return {} if isinstance(snapshot, np.ndarray) else snapshot


def snapshot_spacing_um(snapshot) -> float | None:
    """The site spacing of a snapshot (um), or None if it does not say."""
    meta = _snapshot_meta(snapshot)
    return float(np.asarray(meta["spacing_um"])) if "spacing_um" in meta else None


def site_class_array(snapshot) -> np.ndarray:
    """Site-class codes of every site: (ny, nx) for a 2D snapshot, (nz, ny, nx) for a 3D one."""
    if isinstance(snapshot, np.ndarray):
        return snapshot
    if "site_class" in snapshot:
        return np.asarray(snapshot["site_class"])
    return site_classes(snapshot["cell_type"], snapshot["antigen_class"],
                        snapshot["car_t_state"], snapshot.get("tissue"))


def _snapshot_classes(snapshot) -> np.ndarray:
    """Site-class codes of the picture of a snapshot: every site of a 2D one, the slice through
    the tumour (``tumour_slice_z``) of a 3D one. (Animations keep the slice of their first
    frame instead: ``simulation.viz.animation.animate``.)"""
    classes = site_class_array(snapshot)
    return classes[tumour_slice_z(classes)] if classes.ndim == 3 else classes


def _volume_classes(snapshot, plot_name: str) -> np.ndarray:
    """Site-class codes (nz, ny, nx) of a 3D snapshot; ValueError naming ``plot_name`` if 2D."""
    classes = site_class_array(snapshot)
    if classes.ndim != 3:
        raise ValueError(f"{plot_name} needs a 3D snapshot (arrays of shape (nz, ny, nx)); "
                         f"this one is 2D, shape {classes.shape}: draw it with plot_snapshot")
    return classes


def tumour_slice_z(snapshot) -> int:
    """z index (site) of the xy slice through the tumour of a 3D snapshot: the slice with the
    most tumour sites, cancer or necrotic (the lowest z of a tie), or ``nz // 2`` if there are
    none. Necrotic debris counts so that a necrotic core does not push the slice off the
    tumour's equator."""
    classes = _volume_classes(snapshot, "tumour_slice_z")
    tumour_per_z = np.isin(classes, TUMOUR_SITE_CLASSES).sum(axis=(1, 2))
    return int(np.argmax(tumour_per_z)) if tumour_per_z.any() else classes.shape[0] // 2


def _mm_per_site(spacing_um: float | None) -> tuple[float, str]:
    """(length of one site, unit) of picture axes: mm when the spacing (um) is known, else
    sites."""
    return (spacing_um / 1000.0, "mm") if spacing_um else (1.0, "sites")


def _site_position(index: int, spacing_um: float | None) -> str:
    """Where the centre of site ``index`` lies along an axis, e.g. "0.49 mm" ("site 32" if the
    spacing in um is unknown)."""
    return f"{(index + 0.5) * spacing_um / 1000.0:.2f} mm" if spacing_um else f"site {index}"


def slice_label(z: int, spacing_um: float | None) -> str:
    """Title note naming the xy slice at site ``z``, e.g. "z = 0.49 mm slice"."""
    return f"z = {_site_position(z, spacing_um)} slice"


def _central_slice(snapshot, spacing_um: float | None):
    """(2D snapshot, title note): a 2D snapshot as it is with no note; a 3D one cut at
    ``tumour_slice_z`` (every 3D array, scalars kept) with the note "z = 0.49 mm slice"."""
    classes = site_class_array(snapshot)
    if classes.ndim == 2:
        return snapshot, None
    z = tumour_slice_z(classes)
    note = slice_label(z, spacing_um)
    if isinstance(snapshot, np.ndarray):
        return snapshot[z], note
    return {name: value[z] if np.ndim(value) == 3 else value
            for name, value in snapshot.items()}, note


def _joined_title(*parts: str | None) -> str:
    """The non-empty ``parts`` joined with commas ("" if none)."""
    return ", ".join(part for part in parts if part)


def _lattice_image_axes(ax: plt.Axes, shape: tuple[int, int], spacing_um: float | None,
                        plane: str = "xy") -> tuple[float, float, float, float]:
    """Label ``ax`` for a lattice picture of ``shape = (rows, columns)`` sites in ``plane``
    (columns along ``plane[0]``, rows along ``plane[1]``: "xy" is (ny, nx)); returns the
    imshow extent, in mm when the site spacing (um) is known, else in sites."""
    rows, columns = shape
    scale, unit = _mm_per_site(spacing_um)
    ax.set_xlabel(f"{plane[0]} ({unit})")
    ax.set_ylabel(f"{plane[1]} ({unit})")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)
    return (0.0, columns * scale, 0.0, rows * scale)


def _site_image(ax: plt.Axes, classes: np.ndarray, extent: tuple[float, float, float, float]
                ) -> None:
    """A 2D array of site-class codes as an image in the ``SITE_CLASSES`` colours."""
    ax.imshow(classes, cmap=SITE_CMAP, vmin=-0.5, vmax=len(SITE_CLASSES) - 0.5,
              interpolation="nearest", origin="lower", extent=extent)


def _snapshot_title(meta) -> str | None:
    """"scenario, day 4.0" and, when the snapshot says which run it is (``replicate`` and
    ``seed``, as ``execution/publish.py`` adds them), ", replicate 0 (seed 1)"."""
    if "time_days" not in meta:
        return None
    title = f"day {float(np.asarray(meta['time_days'])):.1f}"
    if "scenario" in meta:
        title = f"{np.asarray(meta['scenario'])}, {title}"
    if "replicate" in meta:
        title += f", replicate {int(np.asarray(meta['replicate']))}"
        if "seed" in meta:
            title += f" (seed {int(np.asarray(meta['seed']))})"
    return title


@styled
def plot_snapshot(snapshot, path: str | Path | None = None, ax: plt.Axes | None = None,
                  title: str | None = None, legend: bool = True,
                  spacing_um: float | None = None) -> plt.Figure:
    """The lattice at one moment, one pixel per site, with the fixed legend of ``SITE_CLASSES``.

    ``snapshot`` is a mapping as saved by ``simulation.io.snapshots`` (``cell_type``,
    ``antigen_class``, ``car_t_state``, optional ``tissue``, ``time_days``, ``spacing_um``), or
    an array of site-class codes. Axes are in mm when the site spacing is known. A 3D snapshot
    (arrays (nz, ny, nx)) draws its xy slice through the tumour (``tumour_slice_z``), named in
    the title ("z = 0.49 mm slice").
    """
    meta = _snapshot_meta(snapshot)
    if spacing_um is None:
        spacing_um = snapshot_spacing_um(meta)
    snapshot, slice_note = _central_slice(snapshot, spacing_um)
    classes = site_class_array(snapshot)
    own_figure = ax is None
    fig, ax = figure_and_axes(ax, (8.6, 5.2) if legend else (5.2, 5.2))
    extent = _lattice_image_axes(ax, classes.shape, spacing_um)
    _site_image(ax, classes, extent)
    title = _joined_title(_snapshot_title(meta) if title is None else title, slice_note)
    if title:
        ax.set_title(title)
    if legend and own_figure:
        _site_legend(fig)
    elif legend:
        ax.legend(handles=site_legend_handles(), loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  title="site", alignment="left")
    return finish(fig, path)


def field_is_off(values: np.ndarray, name: str) -> bool:
    """True if a snapshot field sits at its neutral value everywhere (not solved, or nothing
    acts on it): oxygen at normoxia, the others at 0 (within the uint8 quantisation step)."""
    neutral = FIELD_NEUTRAL[name]
    return bool(np.allclose(values, neutral, rtol=0.0, atol=max(abs(neutral), 1.0) / 255.0))


def _necrosis_threshold(snapshot) -> float | None:
    """Oxygen below which cancer cells turn necrotic (mmHg), if the snapshot saved it."""
    if "necrosis_threshold_mmhg" not in snapshot:
        return None
    return float(np.asarray(snapshot["necrosis_threshold_mmhg"]))


def _field_axes(ax: plt.Axes, snapshot, name: str, spacing_um: float | None,
                plane: str = "xy") -> None:
    """One field of a 2D ``snapshot`` (a picture in ``plane``) as an image with a colour bar in
    its unit; necrotic sites outlined; "field off" written across a field at its neutral
    value."""
    label, cmap = FIELD_STYLES.get(name, (name, "viridis"))
    unit = SNAPSHOT_FIELDS.get(name, "a.u.")
    values = snapshot_field(snapshot, name)
    ax.set_title(label)
    if values is None:
        shape = np.asarray(snapshot["cell_type"]).shape
        _lattice_image_axes(ax, shape, spacing_um, plane)
        ax.text(0.5, 0.5, "not in this snapshot\n(saved before fields)", ha="center",
                va="center", transform=ax.transAxes, color="0.3")
        return
    extent = _lattice_image_axes(ax, values.shape, spacing_um, plane)
    neutral = FIELD_NEUTRAL.get(name, 0.0)
    top = max(float(values.max()), neutral, 1e-9)
    image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=top, interpolation="nearest",
                      origin="lower", extent=extent)
    ax.figure.colorbar(image, ax=ax, shrink=0.8, label=f"{label} ({unit})")
    if field_is_off(values, name):
        ax.text(0.5, 0.5, f"field off\n(uniform {neutral:g} {unit})", ha="center",
                va="center", transform=ax.transAxes, color="0.15", fontsize=11,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.6"})
    threshold = _necrosis_threshold(snapshot)
    if name == "oxygen" and threshold is not None and values.min() < threshold < values.max():
        ax.contour(values, levels=[threshold], colors=NECROSIS_CONTOUR, linewidths=1.0,
                   linestyles="--", origin="lower", extent=extent)
    necrotic = _snapshot_classes(snapshot) == SITE_NECROTIC
    if necrotic.any():
        ax.contour(necrotic.astype(np.float32), levels=[0.5], colors=NECROTIC_OUTLINE,
                   linewidths=0.8, origin="lower", extent=extent)


@styled
def plot_snapshot_with_fields(snapshot, path: str | Path | None = None,
                              fields: Sequence[str] = tuple(SNAPSHOT_FIELDS),
                              title: str | None = None) -> plt.Figure:
    """The lattice and its diffusing fields side by side, one panel each, same axes (mm).

    ``snapshot`` is a mapping as saved by ``simulation.io.snapshots``. Field panels (default
    oxygen in mmHg and suppressive factor in a.u.) have a colour bar in the field's unit and
    outline the necrotic sites in white; oxygen has a dashed contour at the scenario's necrosis
    threshold (when saved); a field at its neutral value everywhere (not solved)
    still draws, marked "field off"; a snapshot saved before fields were stored says so.
    A 3D snapshot draws its xy slice through the tumour (``tumour_slice_z``), named in the
    title.
    """
    spacing_um = snapshot_spacing_um(snapshot)
    snapshot, slice_note = _central_slice(snapshot, spacing_um)
    fig, axes = plt.subplots(1, 1 + len(fields), figsize=(4.6 * (1 + len(fields)), 5.6),
                             layout="constrained", squeeze=False)
    plot_snapshot.__wrapped__(snapshot, ax=axes[0][0], legend=False, spacing_um=spacing_um,
                              title="cells and tissue")
    for ax, name in zip(axes[0][1:], fields):
        _field_axes(ax, snapshot, name, spacing_um)
    handles = site_legend_handles()
    if fields:
        handles.append(Line2D([], [], color=NECROTIC_OUTLINE, lw=1.5,
                              path_effects=[patheffects.withStroke(linewidth=3, foreground="0.3")],
                              label="necrotic sites (outline on fields)"))
    threshold = _necrosis_threshold(snapshot)
    if "oxygen" in fields and threshold is not None:
        handles.append(Line2D([], [], color=NECROSIS_CONTOUR, lw=1.0, ls="--",
                              label=f"oxygen = necrosis threshold ({threshold:g} mmHg)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=4, title="site")
    title = _joined_title(_snapshot_title(snapshot) if title is None else title, slice_note)
    if title:
        fig.suptitle(title)
    return finish(fig, path)


# ---------------------------------------------------------------------------------------------
# 3D lattice snapshots
# ---------------------------------------------------------------------------------------------
#: site classes of cancer cells, and of CAR-T cells (the two channels of projections)
CANCER_SITE_CLASSES = (SITE_CANCER_HIGH, SITE_CANCER_LOW, SITE_CANCER_NEGATIVE)
CAR_T_SITE_CLASSES = (SITE_CAR_T_EFFECTOR, SITE_CAR_T_EXHAUSTED, SITE_CAR_T_MEMORY)
#: the sites of the tumour mass, which slices of 3D snapshots go through
TUMOUR_SITE_CLASSES = CANCER_SITE_CLASSES + (SITE_NECROTIC,)
#: the site classes ``plot_points_3d`` draws (not empty, normal or tissue sites)
POINT_SITE_CLASSES = TUMOUR_SITE_CLASSES + CAR_T_SITE_CLASSES
#: the plane normal to each axis, as (horizontal, vertical) axis names, and each axis' index in
#: snapshot arrays [z, y, x]; cutting or projecting along an axis leaves the rows and columns
#: of its plane in that order
PLANES = {"z": "xy", "y": "xz", "x": "yz"}
ARRAY_AXIS = {"z": 0, "y": 1, "x": 2}
#: the lines marking where the other planes cut a slice
CUT_LINE = {"color": "0.25", "lw": 0.8, "ls": "--"}
#: projection channels: (label, site classes, colour of its brightest pixel)
PROJECTION_CHANNELS = (
    ("cancer", CANCER_SITE_CLASSES, SITE_CLASSES[SITE_CANCER_HIGH].colour),
    ("CAR-T", CAR_T_SITE_CLASSES, SITE_CLASSES[SITE_CAR_T_EFFECTOR].colour),
)
#: standard deviation of the Gaussian that turns cell sites into local density (sites)
DENSITY_SMOOTHING_SITES = 1.0


def _slice_centre(classes: np.ndarray, centre: Sequence[int] | None) -> tuple[int, int, int]:
    """``centre`` (z, y, x) checked to lie on the lattice; by default the centroid of the tumour
    sites (cancer and necrotic) rounded to a site, or the lattice centre if there are none."""
    if centre is None:
        tumour_sites = np.argwhere(np.isin(classes, TUMOUR_SITE_CLASSES))
        centre = (np.rint(tumour_sites.mean(axis=0)) if len(tumour_sites)
                  else np.array(classes.shape) // 2)
    centre = tuple(int(index) for index in centre)
    if len(centre) != 3 or not all(0 <= c < n for c, n in zip(centre, classes.shape)):
        raise ValueError(f"centre must be a (z, y, x) site of the lattice, shape {classes.shape}; "
                         f"got {centre}")
    return centre


@styled
def plot_orthogonal_slices(snapshot, path: str | Path | None = None,
                           centre: Sequence[int] | None = None) -> plt.Figure:
    """Three planes through a 3D snapshot side by side (xy, xz, yz) in the site-class colours,
    with the fixed legend and axes in mm.

    The planes pass through the site ``centre`` = (z, y, x) (indices into the snapshot arrays),
    by default the centroid of the tumour (cancer and necrotic sites) rounded to a site (the
    lattice centre if there is none). Dashed lines in each panel mark where the other two
    planes cut it.
    """
    classes = _volume_classes(snapshot, "plot_orthogonal_slices")
    centre = _slice_centre(classes, centre)
    spacing_um = snapshot_spacing_um(snapshot)
    scale, _ = _mm_per_site(spacing_um)
    fig, axes = plt.subplots(1, 3, figsize=(15.0, 5.2), layout="constrained")
    for ax, normal in zip(axes, ("z", "y", "x")):
        plane = PLANES[normal]
        index = centre[ARRAY_AXIS[normal]]
        picture = np.take(classes, index, axis=ARRAY_AXIS[normal])
        _site_image(ax, picture, _lattice_image_axes(ax, picture.shape, spacing_um, plane))
        ax.axvline((centre[ARRAY_AXIS[plane[0]]] + 0.5) * scale, **CUT_LINE)
        ax.axhline((centre[ARRAY_AXIS[plane[1]]] + 0.5) * scale, **CUT_LINE)
        ax.set_title(f"{plane} plane at {normal} = {_site_position(index, spacing_um)}")
    _site_legend(fig)
    title = _snapshot_title(_snapshot_meta(snapshot))
    if title:
        fig.suptitle(title)
    return finish(fig, path)


def _max_projection_rgb(classes: np.ndarray, axis: str) -> np.ndarray:
    """RGB image (rows, columns, 3) of floats 0-1 on black: for each of ``PROJECTION_CHANNELS``,
    the maximum along ``axis`` of its sites' local density (indicator smoothed with a Gaussian
    of ``DENSITY_SMOOTHING_SITES``), scaled to the channel's brightest pixel, in its colour;
    the channels add."""
    rows_columns = tuple(n for i, n in enumerate(classes.shape) if i != ARRAY_AXIS[axis])
    image = np.zeros(rows_columns + (3,))
    for _, codes, colour in PROJECTION_CHANNELS:
        density = gaussian_filter(np.isin(classes, codes).astype(np.float32),
                                  DENSITY_SMOOTHING_SITES, mode="constant")
        projection = density.max(axis=ARRAY_AXIS[axis])
        if projection.max() > 0:
            image += (projection / projection.max())[..., None] * np.array(to_rgb(colour))
    return np.clip(image, 0.0, 1.0)


def _oxygen_min_projection(snapshot, classes: np.ndarray, axis: str) -> dict:
    """A 2D snapshot for ``_field_axes``: the minimum of oxygen along ``axis`` (the minimum of
    the uint8 codes, which grow with oxygen), marking as necrotic the lines of sight that meet
    necrotic debris; the necrosis threshold kept."""
    array_axis = ARRAY_AXIS[axis]
    necrotic_seen = (classes == SITE_NECROTIC).any(axis=array_axis)
    projected = {"oxygen_u8": np.asarray(snapshot["oxygen_u8"]).min(axis=array_axis),
                 "oxygen_max": snapshot["oxygen_max"],
                 "site_class": np.where(necrotic_seen, SITE_NECROTIC, SITE_EMPTY)}
    if "necrosis_threshold_mmhg" in snapshot:
        projected["necrosis_threshold_mmhg"] = snapshot["necrosis_threshold_mmhg"]
    return projected


@styled
def plot_max_projection(snapshot, path: str | Path | None = None, axis: str = "z"
                        ) -> plt.Figure:
    """A maximum-intensity projection of a 3D snapshot along ``axis``, like a two-channel
    confocal image: cancer (vermillion) and CAR-T (blue) local density on black, each channel
    scaled to its brightest pixel (see ``_max_projection_rgb``); where both are dense the
    colours add up to a pale beige.

    If the snapshot has an oxygen field that is solved (not ``field_is_off``), a second panel
    shows its minimum-intensity projection (mmHg): the hypoxic core, necrotic debris outlined.
    """
    classes = _volume_classes(snapshot, "plot_max_projection")
    if axis not in PLANES:
        raise ValueError(f"axis must be one of {sorted(PLANES)}, not {axis!r}")
    meta = _snapshot_meta(snapshot)
    oxygen = snapshot_field(meta, "oxygen")
    show_oxygen = oxygen is not None and not field_is_off(oxygen, "oxygen")
    spacing_um = snapshot_spacing_um(meta)
    fig, axes = plt.subplots(1, 1 + show_oxygen, figsize=(6.0 + 5.6 * show_oxygen, 5.8),
                             layout="constrained", squeeze=False)
    ax = axes[0][0]
    image = _max_projection_rgb(classes, axis)
    ax.imshow(image, interpolation="nearest", origin="lower",
              extent=_lattice_image_axes(ax, image.shape[:2], spacing_um, PLANES[axis]))
    ax.set_title(f"maximum projection along {axis}")
    for label, _, colour in PROJECTION_CHANNELS:  # one colour scale per channel
        cmap = LinearSegmentedColormap.from_list(f"black_{label}", ["#000000", colour])
        fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=ax, shrink=0.8, pad=0.02,
                     label=f"{label} local density, smoothed over {DENSITY_SMOOTHING_SITES:g} "
                           "site (1 = brightest pixel)")
    if show_oxygen:
        _field_axes(axes[0][1], _oxygen_min_projection(meta, classes, axis), "oxygen",
                    spacing_um, PLANES[axis])
        axes[0][1].set_title(f"oxygen, minimum projection along {axis}")
    title = _snapshot_title(meta)
    if title:
        fig.suptitle(title)
    return finish(fig, path)


@styled
def plot_points_3d(snapshot, path: str | Path | None = None, max_points: int = 30_000
                   ) -> plt.Figure:
    """A 3D scatter of the cancer (coloured by antigen class), necrotic and CAR-T sites of a 3D
    snapshot (not empty, normal or tissue sites), equal axis scales in mm; for small lattices.

    With more than ``max_points`` such sites, every k-th (in array order, so the same picture
    each time) is drawn, with k the smallest that fits, and the title says "1 in k shown". The
    legend counts every site of each class.
    """
    classes = _volume_classes(snapshot, "plot_points_3d")
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, not {max_points}")
    spacing_um = snapshot_spacing_um(snapshot)
    scale, unit = _mm_per_site(spacing_um)
    sites = np.flatnonzero(np.isin(classes, POINT_SITE_CLASSES))
    every = max(1, -(-len(sites) // max_points))  # ceiling division
    shown = sites[::every]
    z, y, x = (np.array(np.unravel_index(shown, classes.shape)) + 0.5) * scale
    shown_classes = classes.ravel()[shown]
    counts = np.bincount(classes.ravel(), minlength=len(SITE_CLASSES))
    fig = plt.figure(figsize=(9.0, 6.8), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    for site_class in SITE_CLASSES:  # a class subsampled away still gets its legend entry
        if site_class.code in POINT_SITE_CLASSES and counts[site_class.code]:
            mine = shown_classes == site_class.code
            ax.scatter(x[mine], y[mine], z[mine], s=6, color=site_class.colour, lw=0,
                       label=f"{site_class.label}: {counts[site_class.code]:,}")
    nz, ny, nx = classes.shape
    ax.set(xlim=(0, nx * scale), ylim=(0, ny * scale), zlim=(0, nz * scale),
           xlabel=f"x ({unit})", ylabel=f"y ({unit})", zlabel=f"z ({unit})")
    ax.set_box_aspect((nx, ny, nz))
    fig.legend(loc="outside right upper", title="sites", alignment="left")
    ax.set_title(_joined_title(_snapshot_title(_snapshot_meta(snapshot)),
                               f"1 in {every} shown" if every > 1 else None))
    return finish(fig, path)
