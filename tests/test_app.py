"""The interactive view (simulation.viz.app): model from the controls, lattice picture, frame rate,
and a real browser pressing play (skipped when chromium or playwright is missing)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import REPO_ROOT

solara = pytest.importorskip("solara", reason="the interactive view needs the viz extra")

from simulation.viz.app import (  # noqa: E402
    MODEL_PARAMS,
    SCENARIO_DEFAULT,
    STEP_MINUTES,
    FieldRenderer,
    ViewModel,
    clock_text,
    field_pngs,
    lattice_classes,
    lattice_png,
    measure_frame_rate,
    shown_fields,
    slider_text,
    steps_per_click,
)
from simulation.viz.lattice_plots import SITE_CLASSES  # noqa: E402
from simulation.config import ConfigError  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def test_controls_build_the_model():
    model = ViewModel(scenario="gbm_solid", effector_to_target=0.05, antigen_scale=0.5,
                      negative_fraction="0.1", max_kills=3, suppression_scale=2.5, seed=4,
                      lattice__width=40, lattice__height=40, tumor__initial_cells=300)
    cfg = model.config
    assert cfg.name == "gbm_solid" and model.seed == 4
    assert cfg.dosing.doses[0].effector_to_target == 0.05
    assert cfg.tumor.antigen.mean_molecules_per_cell == pytest.approx(3000.0)
    assert cfg.tumor.antigen.negative_fraction == 0.1
    assert cfg.car_t.max_kills == 3
    assert cfg.microenvironment.suppression.secretion_per_cancer_cell_per_min == (
        pytest.approx(2.5))
    default = ViewModel(scenario="gbm_solid", negative_fraction=SCENARIO_DEFAULT,
                        lattice__width=40, lattice__height=40, tumor__initial_cells=300)
    assert default.config.tumor.antigen.negative_fraction == 0.3


@pytest.mark.parametrize("product, roles", [
    ("single: first antigen", [("CD19", "kill")]),
    ("OR: every tumour antigen", [("CD19", "kill"), ("CD22", "kill")]),
    ("AND: first antigen primes, second kills", [("CD19", "prime"), ("CD22", "kill")]),
    ("NOT: second antigen vetoes", [("CD19", "kill"), ("CD22", "veto")]),
])
def test_product_control_sets_the_receptor_logic(product, roles):
    model = ViewModel(scenario="car_design/b_all_cd22_subclone", product=product,
                      armour="IL-12", antigen_scale=2.0, lattice__width=30,
                      lattice__height=30, tumor__initial_cells=200)
    cfg = model.config
    assert [(r.antigen, r.role) for r in cfg.car_t.receptors] == roles
    assert cfg.car_t.armour.il12 is not None
    assert cfg.tumor.antigens["CD22"].mean_molecules_per_cell == pytest.approx(6000.0)
    assert model.lattice.extra.size == 30 * 30 * model.lattice.shape[0]


def test_two_antigen_logic_on_a_one_antigen_tumour_is_refused():
    with pytest.raises(ConfigError, match="needs a tumour with two antigens"):
        ViewModel(scenario="b_all_cd19", product="AND: first antigen primes, second kills")
    model = ViewModel(scenario="gbm_solid", armour="dnTGFbR", lattice__width=30,
                      lattice__height=30, tumor__initial_cells=200)
    assert model.params[0]["suppression_sensitivity"] == pytest.approx(0.3)


@pytest.mark.parametrize("composition, cd4, memory_like", [
    ("CD8 only", 0.0, 0.0), ("1:1 CD4:CD8", 0.5, 0.0), ("1:1, 50 % memory-like", 0.5, 0.5)])
def test_composition_control_sets_the_products_subsets(composition, cd4, memory_like):
    model = ViewModel(scenario="b_all_cd19", composition=composition, lattice__width=30,
                      lattice__height=30, tumor__initial_cells=200)
    mix = model.config.car_t.composition
    assert (mix.cd4_fraction, mix.memory_like_fraction) == (cd4, memory_like)
    assert "car_t_cd4" in model.columns
    assert ViewModel(scenario="b_all_cd19", lattice__width=30, lattice__height=30,
                     tumor__initial_cells=200).config.car_t.composition is None
    with pytest.raises(ConfigError, match="composition must be one of"):
        ViewModel(scenario="b_all_cd19", composition="2:1")


def test_every_control_is_a_model_argument():
    import inspect

    names = set(inspect.signature(ViewModel.__init__).parameters)
    assert set(MODEL_PARAMS) <= names


def test_every_slider_says_its_value_and_unit_under_a_short_label():
    sliders = {name: spec for name, spec in MODEL_PARAMS.items() if spec["type"] != "Select"}
    assert set(sliders) == {"effector_to_target", "antigen_scale", "suppression_scale",
                            "max_kills", "seed"}
    for spec in sliders.values():  # a long label squashes the slider beside it to a dot
        assert len(spec["label"]) <= 25 and spec["unit"], spec
    assert slider_text(MODEL_PARAMS["effector_to_target"], 0.01) == (
        "dose (E:T): 0.010 CAR-T per cancer cell")
    assert slider_text(MODEL_PARAMS["max_kills"], 7) == (
        "kills before exhaustion: 7 kills per CAR-T (car_t.max_kills)")


def test_a_step_click_is_one_simulated_hour_and_the_clock_counts_days():
    model = ViewModel(scenario="b_all_cd19", lattice__width=30, lattice__height=30,
                      tumor__initial_cells=200)
    assert STEP_MINUTES == 60.0 and steps_per_click(model) * model.dt_min == 60.0
    for _ in range(24 * steps_per_click(model)):  # 24 clicks
        model.step()
    assert clock_text(model).startswith("day 1.00 (24.0 h simulated, 240 steps of 6 min) · ")
    fine = ViewModel(scenario="b_all_cd19", lattice__width=30, lattice__height=30,
                     tumor__initial_cells=200, time__dt_min=3.0)
    assert steps_per_click(fine) == 20  # the same hour, whatever the time step


def test_lattice_picture_is_a_png_and_changes_when_stepped():
    model = ViewModel(scenario="b_all_cd19", lattice__width=60, lattice__height=60,
                      tumor__initial_cells=500)
    classes = lattice_classes(model)
    assert classes.shape == (60, 60) and classes.max() < len(SITE_CLASSES)
    first = lattice_png(model)
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    for _ in range(20):
        model.step()
    assert lattice_png(model) != first


def test_suppression_control_changes_the_field():
    small = {"lattice__width": 40, "lattice__height": 40, "tumor__initial_cells": 300}
    weak = ViewModel(scenario="gbm_solid", suppression_scale=0.5, **small)
    strong = ViewModel(scenario="gbm_solid", suppression_scale=2.0, **small)
    assert strong.lattice.grid("suppression").max() == pytest.approx(
        4.0 * weak.lattice.grid("suppression").max(), rel=1e-3)
    off = ViewModel(scenario="gbm_solid", suppression_scale=0.0, **small)
    assert not off.lattice.grid("suppression").any()


def test_fields_shown_only_where_the_scenario_solves_them():
    blood = ViewModel(scenario="b_all_cd19", lattice__width=40, lattice__height=40,
                      tumor__initial_cells=300)
    assert shown_fields(blood) == [] and field_pngs(blood) == {}
    solid = ViewModel(scenario="gbm_solid", lattice__width=40, lattice__height=40,
                      tumor__initial_cells=300)
    assert shown_fields(solid) == ["oxygen", "suppression"]
    pictures = field_pngs(solid)
    assert list(pictures) == ["oxygen", "suppression"]
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in pictures.values())


def test_field_colour_bar_grows_to_a_round_number():
    renderer = FieldRenderer((10, 10), 15.0, "suppressive factor", "a.u.", "magma", vmax=21.0)
    assert renderer.vmax == 30.0
    assert renderer._colour_bar_axes.get_ylabel() == "a.u."
    colours = renderer.colours(np.full((10, 10), 30.0))
    assert renderer.vmax == 30.0 and (colours == renderer.lut[255]).all()
    renderer.colours(np.full((10, 10), 31.0))
    assert renderer.vmax == 40.0


def test_measure_frame_rate_steps_the_model_and_times_steps_and_pictures_apart():
    """What benchmarks/run.py reports for the view: the frame rate counts the model steps of
    every frame and the time to draw its pictures (the speed itself is measured there)."""
    model = ViewModel(scenario="gbm_solid", lattice__width=40, lattice__height=40,
                      tumor__initial_cells=300)
    rate = measure_frame_rate(model, frames=2, steps_per_frame=3)
    assert model.step_index == 6
    assert rate["step_ms_per_frame"] > 0 and rate["render_ms_per_frame"] > 0
    seconds_per_frame = (rate["step_ms_per_frame"] + rate["render_ms_per_frame"]) / 1000
    assert rate["frames_per_s"] == pytest.approx(1 / seconds_per_frame)


def _missing_web_assets() -> list[str]:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        from solara.server.settings import assets
        from solara_offline_assets import needed_packages
    finally:
        sys.path.pop(0)
    return [p for p in needed_packages() if not (assets.proxy_cache_dir / p).is_dir()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_server(tmp_path):
    port = _free_port()
    log_path = tmp_path / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    # Compile (or load) the kernels first, for the same installed package the server imports
    # (run outside the repository so the installed copy, not the source tree, is found): a
    # cold numba compile on a fresh machine takes longer than the page is given to appear.
    subprocess.run([sys.executable, "-c", "from simulation.execution.pool import warm_up; warm_up()"],
                   cwd=tmp_path, check=True, timeout=600)
    server = subprocess.Popen(
        [sys.executable, "-m", "solara", "run", "simulation.viz.app:page", "--host", "127.0.0.1",
         "--port", str(port), "--production", "--no-open"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "CARTSIM_CONFIG_DIR": str(REPO_ROOT / "configs")})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")
                pytest.fail(f"solara server did not start:\n{output[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_browser_shows_values_and_days_and_play_changes_the_lattice(app_server, tmp_path):
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright not installed (pip install playwright)")
    missing = _missing_web_assets()
    if missing:
        pytest.skip(f"Solara's web assets {missing} are not cached and this machine may be "
                    "offline: run python scripts/solara_offline_assets.py")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.goto(app_server, timeout=60_000)
            lattice = page.locator(".cartsim-lattice").first
            lattice.wait_for(state="visible", timeout=120_000)
            # every slider's value and unit is on the page, the clock counts days, and no
            # empty "Page 0" tab sits above the pictures
            for text in ("dose (E:T): 0.010 CAR-T per cancer cell",
                         "antigen density: 1.00 x the scenario's mean",
                         "suppressive factor: 1.0 x the scenario's secretion",
                         "kills before exhaustion: 10 kills per CAR-T", "seed: 1 ",
                         "day 0.00 (0.0 h simulated"):
                assert page.get_by_text(text).first.is_visible(), text
            assert not page.get_by_role("tab").count()
            page.get_by_role("button", name="Step").click(timeout=30_000)
            page.get_by_text("day 0.04 (1.0 h simulated, 10 steps of 6 min)").wait_for(
                timeout=30_000)  # one click: one simulated hour
            before = lattice.screenshot(path=str(tmp_path / "before.png"))
            page.get_by_role("button", name="▶").click(timeout=30_000)
            time.sleep(4)
            after = lattice.screenshot(path=str(tmp_path / "after.png"))
        finally:
            context.close()
    assert before != after
    from PIL import Image

    a = np.asarray(Image.open(tmp_path / "before.png").convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "after.png").convert("RGB"), dtype=np.int16)
    assert a.shape == b.shape and np.count_nonzero(np.abs(a - b).sum(axis=2)) > 100
