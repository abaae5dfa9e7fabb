"""End-to-end: the cartsim command writes the output contract, refuses bad input cleanly."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO_ROOT

from simulation.cli import main

DATA = Path(__file__).parent / "data"
STUDY = DATA / "small_study.yaml"


def cartsim(*args, cwd=None):
    """Run ``python -m simulation ARGS`` (the installed cartsim command) and capture output."""
    return subprocess.run([sys.executable, "-m", "simulation", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = cartsim("run", STUDY, "--out", out, "--quiet", "--workers", "2")
    assert result.returncode == 0, result.stderr
    return out


def test_run_writes_every_file_of_the_contract(study_run):
    for name in ("timeseries.csv", "summary.csv", "burden.png", "blood_kinetics.png",
                 "config.resolved.yaml", "manifest.json"):
        assert (study_run / name).stat().st_size > 0, name
    assert not list(study_run.parent.glob(".run.partial-*")), "staging folder left behind"


def test_timeseries_has_contract_columns_and_rows(study_run):
    ts = pd.read_csv(study_run / "timeseries.csv")
    required = {"scenario", "tumor_type", "replicate", "seed", "time_days", "tumor_cells",
                "car_t_cells", "car_t_effector", "car_t_exhausted", "normal_cells",
                "tumor_antigen_negative", "cumulative_cancer_killed"}
    assert required <= set(ts.columns)
    assert set(ts["tumor_type"]) == {"blood", "solid"}
    assert sorted(ts["seed"].unique()) == [7, 8]
    # 6 days at one census per 12 h = 13 censuses per run, 4 runs
    assert len(ts) == 4 * 13
    per_run = ts.groupby(["scenario", "replicate"])["time_days"]
    assert per_run.apply(lambda t: t.is_monotonic_increasing).all()
    assert (ts["car_t_cells"] == ts["car_t_effector"] + ts["car_t_exhausted"]
            + ts["car_t_memory"]).all()


def test_summary_has_one_row_per_run_with_valid_responses(study_run):
    summary = pd.read_csv(study_run / "summary.csv")
    assert len(summary) == 4
    assert set(summary["response"]) <= {"CR", "PR", "SD", "PD"}
    assert {"cleared", "nadir_day", "car_t_peak", "car_t_peak_day"} <= set(summary.columns)
    assert (summary["cleared"] == (summary["response"] == "CR")).all()
    assert (summary["car_t_peak"] >= summary["car_t_infused"]).all()


def test_resolved_config_and_manifest_describe_the_run(study_run):
    resolved = yaml.safe_load((study_run / "config.resolved.yaml").read_text())
    assert [s["name"] for s in resolved["scenarios"]] == ["small_blood", "small_solid"]
    assert resolved["scenarios"][0]["lattice"]["width"] == 40
    manifest = json.loads((study_run / "manifest.json").read_text())
    assert manifest["seeds"] == [7, 8]
    assert {"cartsim", "numba", "mesa", "numpy", "python"} <= set(manifest["versions"])


def test_burden_plot_is_a_png_of_sensible_size(study_run):
    data = (study_run / "burden.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # two panels with lines and bands, not an empty canvas


def test_same_seed_gives_bit_identical_outputs_with_any_worker_count(study_run, tmp_path):
    again = tmp_path / "again"
    result = cartsim("run", STUDY, "--out", again, "--quiet", "--workers", "1")
    assert result.returncode == 0, result.stderr
    for name in ("timeseries.csv", "summary.csv", "burden.png", "blood_kinetics.png",
                 "config.resolved.yaml"):
        assert (again / name).read_bytes() == (study_run / name).read_bytes(), name


def test_existing_output_folder_is_never_overwritten(study_run):
    before = (study_run / "timeseries.csv").read_bytes()
    result = cartsim("run", STUDY, "--out", study_run, "--quiet")
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert (study_run / "timeseries.csv").read_bytes() == before


def test_different_seed_changes_results(study_run, tmp_path):
    other = tmp_path / "other"
    result = cartsim("run", STUDY, "--out", other, "--quiet", "--seed", "100")
    assert result.returncode == 0, result.stderr
    assert (other / "timeseries.csv").read_bytes() != (study_run / "timeseries.csv").read_bytes()


@pytest.mark.parametrize("content, expected", [
    ("extends: small_blood.yaml\ntumor: {cycle_time_h: -3}\n",
     "tumor.cycle_time_h: must be > 0 (got -3"),
    ("extends: small_blood.yaml\ncar_t: {kill_rate_per_hour: 1}\n",
     "car_t.kill_rate_per_hour: unknown key (did you mean 'kill_rate_per_h'?)"),
    ("extends: small_blood.yaml\nlattice: {width: ten}\n", "lattice.width:"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("name: x\ntumor: !!python/object:os.system {}\n", "YAML error"),
])
def test_bad_config_is_one_clear_error_with_exit_2_and_no_output(tmp_path, content, expected):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    for name in ("small_blood.yaml", "small_solid.yaml"):
        (tmp_path / name).write_text((DATA / name).read_text().replace(
            "../../configs/", str(Path(__file__).parent.parent / "configs") + "/"))
    out = tmp_path / "out"
    result = cartsim("run", bad, "--out", out, "--quiet", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "bad.yaml" in result.stderr and expected in result.stderr, result.stderr
    assert not out.exists()


def test_set_override_is_validated_like_the_file():
    result = cartsim("validate", STUDY, "--set", "car_t.max_kills=0")
    assert result.returncode == 2
    assert "car_t.max_kills: must be >= 1 (got 0)" in result.stderr
    ok = cartsim("validate", STUDY, "--set", "car_t.max_kills=3")
    assert ok.returncode == 0, ok.stderr
    assert "small_blood (blood)" in ok.stdout


def test_schema_is_json_with_the_config_sections():
    result = cartsim("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert {"tumor", "car_t", "dosing", "lattice", "time", "extends"} <= set(schema["properties"])


def test_a_reader_that_stops_early_is_no_error():
    """``cartsim schema | head``: the reader closes the pipe before cartsim has written; exit
    141 (128 + SIGPIPE, as a shell pipeline expects) and no traceback."""
    process = subprocess.Popen([sys.executable, "-m", "simulation", "schema"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first byte
    with process.stderr:
        stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_version_and_every_option_has_help():
    version = cartsim("--version")
    assert version.returncode == 0 and version.stdout.startswith("cartsim ")
    for command in ("run", "validate", "schema", "sweep", "report", "resume", "animate", "app",
                    "export-vtk"):
        lines = [line.strip() for line in cartsim(command, "--help").stdout.splitlines()]
        # an option's help follows two spaces on its line, or fills the next line
        bare = [line for line, after in zip(lines, lines[1:] + [""])
                if line.startswith("-") and "  " not in line
                and (not after or after.startswith("-"))]
        assert not bare, f"cartsim {command}: options without help: {bare}"


def test_no_arguments_print_a_first_command_to_try():
    first = cartsim()
    assert first.returncode == 0, first.stderr
    assert "cartsim run configs/blood_vs_solid.yaml" in first.stdout
    assert "usage:" not in first.stdout  # not only argparse's usage line


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("run", "--help"), ()],
                         ids=["version", "help", "run-help", "no-arguments"])
def test_help_and_version_load_no_engine(args):
    """``cartsim --version`` took 3.3 s importing numba and the model it never uses."""
    code = ("import sys; from simulation.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = ('numba', 'simulation.engine', 'pandas', 'matplotlib', 'pydantic')\n"
            "print('LOADED', ','.join(m for m in heavy if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                           check=True, timeout=60).stdout
    assert shown.splitlines()[-1] == "LOADED ", shown


def test_a_missing_config_suggests_the_nearest_file(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "blood_vs_solid.yaml").write_text("name: x\n")
    result = cartsim("run", "configs/blood_vs_soild.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == ("cartsim: error: configs/blood_vs_soild.yaml: file not "
                                     "found; did you mean configs/blood_vs_solid.yaml?")
    typed_without_folder = cartsim("validate", "blood_vs_solid.yaml", cwd=tmp_path)
    assert "did you mean configs/blood_vs_solid.yaml?" in typed_without_folder.stderr
    nothing_alike = cartsim("validate", "zzz.yaml", cwd=tmp_path)
    assert nothing_alike.returncode == 2 and "did you mean" not in nothing_alike.stderr


# ---- each kind of file is checked as what it is ----------------------------------------------
def test_validate_checks_a_sweep_as_a_sweep_and_resolves_every_run(capsys):
    assert main(["validate", str(REPO_ROOT / "configs" / "sweeps" / "dose_x_antigen.yaml")]) == 0
    assert "ok: sweep dose_x_antigen: 16 design points x 2 base(s) x 3 replicate(s) = 96 runs" \
        in capsys.readouterr().out


def test_validate_accepts_a_base_file_that_others_extend(capsys, tmp_path):
    assert main(["validate", str(REPO_ROOT / "configs" / "base.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok: a base file" in out and "name, tumor_type, tumor, dosing" in out
    # the same partial file that nothing extends is a scenario with missing keys
    lone = tmp_path / "lone.yaml"
    lone.write_text((REPO_ROOT / "configs" / "base.yaml").read_text())
    assert main(["validate", str(lone)]) == 2
    assert "lone.yaml: name: required key is missing" in capsys.readouterr().err
    # a base file with a wrong value is reported as such
    (tmp_path / "child.yaml").write_text("extends: broken.yaml\nname: child\n")
    (tmp_path / "broken.yaml").write_text("lattice: {width: -3}\n")
    assert main(["validate", str(tmp_path / "broken.yaml")]) == 2
    assert "lattice.width" in capsys.readouterr().err


def test_a_file_of_the_wrong_kind_says_which_command_runs_it(capsys, tmp_path):
    sweep = REPO_ROOT / "configs" / "sweeps" / "dose_x_antigen.yaml"
    assert main(["run", str(sweep), "--out", str(tmp_path / "x")]) == 2
    assert "is a sweep file (it has base and parameters); run it with `cartsim sweep" \
        in capsys.readouterr().err
    scenario = REPO_ROOT / "configs" / "gbm_solid.yaml"
    assert main(["sweep", str(scenario), "--out", str(tmp_path / "y")]) == 2
    assert "is a scenario file, not a sweep" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_schema_of_a_sweep_file(capsys):
    assert main(["schema", "--kind", "sweep"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"base", "parameters", "design", "replicates"} <= set(schema["properties"])
    assert schema["title"] == "cartsim sweep"


def test_scale_runs_the_study_on_fewer_sites_and_records_it(tmp_path):
    out = tmp_path / "scaled"
    result = cartsim("run", STUDY, "--scale", "0.25", "--replicates", "1", "--days", "1",
                     "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    for scenario in resolved["scenarios"]:  # both 40 x 40 sites with 400 cancer cells
        assert (scenario["lattice"]["width"], scenario["lattice"]["height"]) == (20, 20)
        assert scenario["tumor"]["initial_cells"] == 100
    assert json.loads((out / "manifest.json").read_text())["scale"] == 0.25
    check = cartsim("validate", STUDY, "--scale", "0.25")
    assert check.returncode == 0 and " cancer cells, " in check.stdout


def test_the_base_install_runs_and_a_sweep_names_the_extra_it_needs(tmp_path):
    """Without the sweep extra (pyarrow, SALib; simulated by blocking their import) a run
    works, and a sweep is one line saying what to install: no traceback."""
    blocked = ("import sys; sys.modules.update(pyarrow=None, SALib=None, distributed=None); "
               "from simulation.cli import main; sys.exit(main(sys.argv[1:]))")

    def without_extras(*args):
        return subprocess.run([sys.executable, "-c", blocked, *map(str, args)],
                              capture_output=True, text=True, timeout=600)

    run = without_extras("run", STUDY, "--replicates", "1", "--days", "1", "--quiet",
                         "--out", tmp_path / "run")
    assert run.returncode == 0, run.stderr
    sweep = without_extras("validate", REPO_ROOT / "configs" / "sweeps" / "dose_x_antigen.yaml")
    assert sweep.returncode == 2 and "Traceback" not in sweep.stderr, sweep.stderr
    assert 'needs pyarrow and SALib' in sweep.stderr
    assert 'pip install "cartsim[sweep]"' in sweep.stderr
