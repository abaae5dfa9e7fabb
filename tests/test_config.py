"""Config loading, validation messages, ``extends``, overrides, studies and the JSON schema."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, minimal_scenario_dict
from simulation.config import (
    ConfigError,
    ScenarioConfig,
    Study,
    apply_overrides,
    display_path,
    json_schema,
    load_scenario,
    load_study,
    parse_override,
    validate,
)


def write_yaml(path, data) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def load_error(path) -> str:
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# valid files
# ---------------------------------------------------------------------------------------------
def test_valid_file_loads_with_values_and_defaults(tmp_path):
    path = write_yaml(tmp_path / "ok.yaml", minimal_scenario_dict())
    cfg = load_scenario(path)
    assert isinstance(cfg, ScenarioConfig)
    assert cfg.name == "minimal"
    assert cfg.tumor.cycle_time_h == 30.0
    assert cfg.tumor.antigen.mean_molecules_per_cell == 4000.0
    assert cfg.lattice.width == 20 and cfg.lattice.height == 20
    assert cfg.dosing.doses[0].effector_to_target == 0.5
    assert cfg.dosing.doses[0].cells is None
    # defaults filled in
    assert cfg.car_t.max_kills == 10
    assert cfg.time.dt_min == 6.0
    assert cfg.lattice.neighbourhood == "moore"
    assert cfg.normal == []


@pytest.mark.parametrize("name", ["b_all_cd19.yaml", "gbm_solid.yaml"])
def test_shipped_scenarios_load(config_dir, name):
    cfg = load_scenario(config_dir / name)
    assert cfg.name == name.removesuffix(".yaml")
    assert cfg.car_t.kill_rate_per_h == 0.05  # the schema default (no file restates it)
    assert cfg.lattice.width == 200


def test_tiny_scenario_fixture_is_valid(tiny_scenario_dict):
    cfg = ScenarioConfig.model_validate(tiny_scenario_dict)
    assert (cfg.lattice.width, cfg.lattice.height) == (20, 20)
    assert cfg.time.duration_days == 2.0
    assert len(cfg.dosing.doses) == 1


# ---------------------------------------------------------------------------------------------
# error messages
# ---------------------------------------------------------------------------------------------
def test_unknown_key_names_file_path_and_suggestion(tmp_path):
    data = minimal_scenario_dict()
    data["tumor"]["cycle_time"] = data["tumor"].pop("cycle_time_h")
    message = load_error(write_yaml(tmp_path / "typo.yaml", data))
    assert "typo.yaml" in message
    assert "tumor.cycle_time" in message
    assert "did you mean 'cycle_time_h'" in message
    # the renamed key is also reported missing
    assert "tumor.cycle_time_h: required key is missing" in message


def test_unknown_key_inside_list_item_is_located(tmp_path):
    data = minimal_scenario_dict()
    data["normal"] = [{"name": "n", "densty": 0.2}]
    message = load_error(write_yaml(tmp_path / "list.yaml", data))
    assert "normal[0].densty: unknown key (did you mean 'density'?)" in message


def test_unknown_key_without_close_match_lists_allowed_keys(tmp_path):
    data = minimal_scenario_dict()
    data["zzzzzz"] = 1
    message = load_error(write_yaml(tmp_path / "far.yaml", data))
    assert "zzzzzz: unknown key; allowed:" in message
    assert "tumor" in message.split("allowed:")[1]


def test_negative_cycle_time_is_rejected_with_key_and_bound(tmp_path):
    data = minimal_scenario_dict()
    data["tumor"]["cycle_time_h"] = -5
    message = load_error(write_yaml(tmp_path / "neg.yaml", data))
    assert "neg.yaml" in message
    assert "tumor.cycle_time_h" in message
    assert "must be > 0" in message
    assert "(got -5)" in message


def test_string_for_number_is_rejected(tmp_path):
    data = minimal_scenario_dict()
    data["tumor"]["cycle_time_h"] = "fast"
    message = load_error(write_yaml(tmp_path / "str.yaml", data))
    assert "tumor.cycle_time_h" in message
    assert "valid number" in message
    assert "'fast'" in message


def test_boolean_for_number_is_rejected(tmp_path):
    data = minimal_scenario_dict()
    data["tumor"]["cycle_time_h"] = True
    load_error(write_yaml(tmp_path / "bool.yaml", data))


def test_missing_required_key_is_reported(tmp_path):
    data = minimal_scenario_dict()
    del data["tumor"]["initial_cells"]
    del data["dosing"]
    message = load_error(write_yaml(tmp_path / "missing.yaml", data))
    assert "tumor.initial_cells: required key is missing" in message
    assert "dosing: required key is missing" in message


def test_literal_value_lists_the_choices(tmp_path):
    data = minimal_scenario_dict()
    data["tumor"]["layout"] = "scattered"
    message = load_error(write_yaml(tmp_path / "lit.yaml", data))
    assert "tumor.layout: must be one of" in message
    assert "'dispersed'" in message and "'compact'" in message


@pytest.mark.parametrize("literal", [".nan", ".inf", "-.inf"])
def test_nan_and_infinity_are_rejected(tmp_path, literal):
    text = yaml.safe_dump(minimal_scenario_dict(), sort_keys=False).replace(
        "cycle_time_h: 30.0", f"cycle_time_h: {literal}")
    assert literal in text
    path = tmp_path / "nonfinite.yaml"
    path.write_text(text, encoding="utf-8")
    message = load_error(path)
    assert "nonfinite.yaml" in message
    assert "tumor.cycle_time_h: must be a finite number" in message


def test_nan_in_nested_optional_field_is_rejected():
    data = minimal_scenario_dict()
    data["tumor"]["antigen"]["cv"] = float("nan")
    with pytest.raises(ConfigError, match=r"tumor\.antigen\.cv: must be a finite number"):
        validate(data, ScenarioConfig, "in-memory")


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_error(path).endswith("empty.yaml: file is empty")


def test_comment_only_file_is_empty(tmp_path):
    path = tmp_path / "comments.yaml"
    path.write_text("# nothing here\n", encoding="utf-8")
    assert "file is empty" in load_error(path)


def test_top_level_list_is_an_error(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    message = load_error(path)
    assert "list.yaml" in message
    assert "top level must be a mapping" in message
    assert "got list" in message


def test_non_text_key_is_an_error(tmp_path):
    path = tmp_path / "intkey.yaml"
    path.write_text("1: one\nname: x\n", encoding="utf-8")
    assert "keys must be text" in load_error(path)


def test_python_object_tag_is_rejected_by_safe_load(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n", encoding="utf-8")
    message = load_error(path)
    assert "evil.yaml" in message
    assert "YAML error" in message
    assert "line 1" in message


def test_invalid_yaml_syntax_reports_line(tmp_path):
    path = tmp_path / "syntax.yaml"
    path.write_text("name: a\ntumor: [unclosed\n", encoding="utf-8")
    message = load_error(path)
    assert "syntax.yaml: YAML error at line" in message


def test_non_utf8_bytes_are_an_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    message = load_error(path)
    assert "latin1.yaml" in message
    assert "not UTF-8" in message
    assert "byte 9" in message


def test_missing_file_and_directory_are_errors(tmp_path):
    assert "file not found" in load_error(tmp_path / "nope.yaml")
    assert "is a directory" in load_error(tmp_path)


def test_dose_with_both_cells_and_ratio_is_an_error():
    data = minimal_scenario_dict()
    data["dosing"]["doses"] = [{"day": 0, "cells": 10, "effector_to_target": 0.1}]
    with pytest.raises(ConfigError) as info:
        validate(data, ScenarioConfig, "both.yaml")
    message = str(info.value)
    assert "dosing.doses[0]" in message
    assert "exactly one of 'cells' or 'effector_to_target'" in message


def test_dose_with_neither_cells_nor_ratio_is_an_error():
    data = minimal_scenario_dict()
    data["dosing"]["doses"] = [{"day": 1}]
    with pytest.raises(ConfigError, match="exactly one"):
        validate(data, ScenarioConfig, "neither.yaml")


def test_normal_densities_above_one_are_an_error():
    data = minimal_scenario_dict()
    data["normal"] = [{"name": "a", "density": 0.6}, {"name": "b", "density": 0.5}]
    with pytest.raises(ConfigError, match=r"normal: densities add up to 1\.1, more than 1"):
        validate(data, ScenarioConfig, "dens.yaml")


def test_tumour_larger_than_half_the_lattice_is_an_error():
    data = minimal_scenario_dict()
    data["tumor"]["initial_cells"] = 201  # 20 x 20 lattice holds at most 200
    expected = (r"big\.yaml: tumor\.initial_cells: must be at most half of the 400 sites of "
                r"the 20x20 lattice \(got 201\)")
    with pytest.raises(ConfigError, match=expected):
        validate(data, ScenarioConfig, "big.yaml")
    data["tumor"]["initial_cells"] = 200
    assert validate(data, ScenarioConfig, "big.yaml").tumor.initial_cells == 200


def test_several_errors_are_reported_one_per_line(tmp_path):
    data = minimal_scenario_dict()
    data["tumor"]["cycle_time_h"] = 0
    data["car_t"] = {"max_kills": 0, "hill_coefficient": 11}
    lines = load_error(write_yaml(tmp_path / "many.yaml", data)).splitlines()
    assert len(lines) == 3
    assert all(line.split(": ", 1)[0].endswith("many.yaml") for line in lines)


# ---------------------------------------------------------------------------------------------
# extends
# ---------------------------------------------------------------------------------------------
def test_extends_merges_nested_mappings(tmp_path):
    base = minimal_scenario_dict()
    base["tumor"]["death_rate_per_day"] = 0.3
    write_yaml(tmp_path / "base.yaml", base)
    child = {"extends": "base.yaml", "name": "child", "tumor": {"cycle_time_h": 55.0}}
    cfg = load_scenario(write_yaml(tmp_path / "child.yaml", child))
    assert cfg.name == "child"
    assert cfg.tumor.cycle_time_h == 55.0  # overridden
    assert cfg.tumor.death_rate_per_day == 0.3  # kept from the base
    assert cfg.tumor.layout == "compact"
    assert cfg.tumor.antigen.mean_molecules_per_cell == 4000.0
    assert cfg.dosing.doses[0].effector_to_target == 0.5


def test_extends_replaces_lists(tmp_path):
    base = minimal_scenario_dict()
    base["normal"] = [{"name": "a", "density": 0.1}, {"name": "b", "density": 0.2}]
    write_yaml(tmp_path / "base.yaml", base)
    child = {"extends": "base.yaml", "normal": [{"name": "c", "density": 0.3}]}
    cfg = load_scenario(write_yaml(tmp_path / "child.yaml", child))
    assert [p.name for p in cfg.normal] == ["c"]


def test_extends_chain_of_three_files_and_subdirectory(tmp_path):
    (tmp_path / "shared").mkdir()
    write_yaml(tmp_path / "shared" / "root.yaml", minimal_scenario_dict())
    write_yaml(tmp_path / "shared" / "mid.yaml",
               {"extends": "root.yaml", "car_t": {"max_kills": 4, "max_divisions": 2}})
    leaf = {"extends": "shared/mid.yaml", "car_t": {"max_kills": 7}}
    cfg = load_scenario(write_yaml(tmp_path / "leaf.yaml", leaf))
    assert cfg.car_t.max_kills == 7
    assert cfg.car_t.max_divisions == 2


def test_extends_cycle_is_an_error(tmp_path):
    write_yaml(tmp_path / "a.yaml", {"extends": "b.yaml", "name": "a"})
    write_yaml(tmp_path / "b.yaml", {"extends": "a.yaml", "name": "b"})
    message = load_error(tmp_path / "a.yaml")
    assert "extends: cycle" in message
    assert "a.yaml" in message and "b.yaml" in message


def test_extends_self_is_a_cycle(tmp_path):
    write_yaml(tmp_path / "self.yaml", {"extends": "self.yaml", "name": "s"})
    assert "extends: cycle" in load_error(tmp_path / "self.yaml")


def test_extends_missing_parent_and_non_string_are_errors(tmp_path):
    write_yaml(tmp_path / "orphan.yaml", {"extends": "gone.yaml"})
    assert "extends: file not found" in load_error(tmp_path / "orphan.yaml")
    write_yaml(tmp_path / "num.yaml", {"extends": 3})
    assert "extends: must be a file name" in load_error(tmp_path / "num.yaml")


# ---------------------------------------------------------------------------------------------
# overrides
# ---------------------------------------------------------------------------------------------
def test_parse_override_parses_yaml_values():
    assert parse_override("tumor.cycle_time_h=30") == (["tumor", "cycle_time_h"], 30)
    assert parse_override("dosing.doses.0.day=3") == (["dosing", "doses", "0", "day"], 3)
    assert parse_override("name=abc") == (["name"], "abc")
    assert parse_override("time.stop_when_cleared=false") == (["time", "stop_when_cleared"],
                                                               False)
    assert parse_override("x.y=[1, 2]") == (["x", "y"], [1, 2])
    assert parse_override("a=") == (["a"], "")


@pytest.mark.parametrize("text", ["no_equals", "=3", "a..b=1", "a.=1", "a=[unclosed"])
def test_parse_override_rejects_malformed_text(text):
    with pytest.raises(ConfigError, match="--set"):
        parse_override(text)


def test_apply_overrides_sets_nested_values_and_list_items():
    data = minimal_scenario_dict()
    data["dosing"]["doses"].append({"day": 5, "cells": 3})
    out = apply_overrides(data, ["tumor.cycle_time_h=12.5", "dosing.doses.0.day=3",
                                 "dosing.doses.1.cells=9", "car_t.max_kills=2"])
    assert out["tumor"]["cycle_time_h"] == 12.5
    assert out["dosing"]["doses"][0]["day"] == 3
    assert out["dosing"]["doses"][1]["cells"] == 9
    assert out["car_t"] == {"max_kills": 2}  # created on the way
    assert out["tumor"]["layout"] == "compact"  # siblings kept
    cfg = validate(out, ScenarioConfig, "overrides")
    assert cfg.dosing.doses[0].day == 3.0


@pytest.mark.parametrize("override, fragment", [
    ("dosing.doses.5.day=1", "is not an index of a list of 1"),
    ("dosing.doses.x.day=1", "is not an index"),
    ("name.first=1", "name is not a mapping"),
    ("name.first.x=1", "cannot descend into 'first'"),
])
def test_apply_overrides_rejects_bad_paths(override, fragment):
    data = minimal_scenario_dict()
    data["name"] = "plain"
    with pytest.raises(ConfigError, match="--set") as info:
        apply_overrides(data, [override])
    assert fragment in str(info.value)


def test_apply_overrides_does_not_modify_its_input():
    data = minimal_scenario_dict()
    original = copy.deepcopy(data)
    apply_overrides(data, ["tumor.cycle_time_h=99", "dosing.doses.0.day=4"])
    assert data == original


def test_load_scenario_applies_overrides(tmp_path):
    path = write_yaml(tmp_path / "s.yaml", minimal_scenario_dict())
    cfg = load_scenario(path, ["tumor.cycle_time_h=48", "dosing.doses.0.day=2"])
    assert cfg.tumor.cycle_time_h == 48.0
    assert cfg.dosing.doses[0].day == 2.0
    with pytest.raises(ConfigError, match=r"tumor\.cycle_time_h: must be > 0"):
        load_scenario(path, ["tumor.cycle_time_h=-1"])


def test_errors_in_overridden_keys_name_the_override_not_the_file(tmp_path):
    path = write_yaml(tmp_path / "s.yaml", minimal_scenario_dict())
    shown = display_path(Path(path))
    with pytest.raises(ConfigError) as err:
        load_scenario(path, ["car_t.max_kill=5"])
    assert str(err.value) == (f"--set car_t.max_kill=5 (on {shown}): car_t.max_kill: unknown "
                              "key (did you mean 'max_kills'?)")
    # a key inside a block the override set, and a cross-key check (a dose after the end)
    with pytest.raises(ConfigError, match=r"^--set car_t\.composition=\{cd4_fraction: 3\} "
                                          r"\(on .*\): car_t\.composition\.cd4_fraction: "):
        load_scenario(path, ["car_t.composition={cd4_fraction: 3}"])
    with pytest.raises(ConfigError, match=r"^--set dosing\.doses\.0\.day=900 \(on .*\): "
                                          r"dosing\.doses\[0\]\.day: must be before the end"):
        load_scenario(path, ["dosing.doses.0.day=900"])
    # what the file itself gets wrong is still the file's, beside an override's error
    data = minimal_scenario_dict()
    data["tumor"]["cycle_time_h"] = -3
    bad = write_yaml(tmp_path / "bad.yaml", data)
    with pytest.raises(ConfigError) as err:
        load_scenario(bad, ["car_t.max_kills=0"])
    lines = str(err.value).splitlines()
    assert f"{display_path(Path(bad))}: tumor.cycle_time_h: must be > 0 (got -3)" in lines
    assert (f"--set car_t.max_kills=0 (on {display_path(Path(bad))}): car_t.max_kills: must be >= 1 "
            "(got 0)") in lines


def test_cartsim_run_blames_a_bad_set_value_on_set_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "simulation", "run", "configs/b_all_cd19.yaml", "--out", str(out),
         "--set", "car_t.max_kill=5"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "cartsim: error: --set car_t.max_kill=5 (on configs/b_all_cd19.yaml): car_t.max_kill: "
        "unknown key (did you mean 'max_kills'?)")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# studies and schema
# ---------------------------------------------------------------------------------------------
def test_load_study_blood_vs_solid(config_dir):
    study = load_study(config_dir / "blood_vs_solid.yaml")
    assert isinstance(study, Study)
    assert study.name == "blood_vs_solid"
    assert study.seed == 1 and study.replicates == 4
    assert [s.name for s in study.scenarios] == ["b_all_cd19", "gbm_solid"]
    assert [s.tumor_type for s in study.scenarios] == ["blood", "solid"]
    assert all(s.seed == study.seed and s.replicates == study.replicates
               for s in study.scenarios)


def test_study_seed_and_replicates_override_the_scenarios(tmp_path):
    scenario = minimal_scenario_dict() | {"seed": 5, "replicates": 9}
    write_yaml(tmp_path / "one.yaml", scenario)
    write_yaml(tmp_path / "two.yaml", scenario | {"name": "two"})
    write_yaml(tmp_path / "study.yaml", {"name": "st", "scenarios": ["one.yaml", "two.yaml"],
                                         "seed": 42, "replicates": 2})
    study = load_study(tmp_path / "study.yaml", ["tumor.cycle_time_h=10"])
    assert [(s.seed, s.replicates) for s in study.scenarios] == [(42, 2), (42, 2)]
    assert all(s.tumor.cycle_time_h == 10.0 for s in study.scenarios)


def test_load_study_of_a_single_scenario_file(tmp_path):
    path = write_yaml(tmp_path / "solo.yaml", minimal_scenario_dict() | {"seed": 8})
    study = load_study(path)
    assert study.name == "minimal"
    assert study.seed == 8
    assert len(study.scenarios) == 1


def test_study_with_duplicate_scenario_names_is_an_error(tmp_path):
    write_yaml(tmp_path / "one.yaml", minimal_scenario_dict())
    write_yaml(tmp_path / "study.yaml", {"name": "dup", "scenarios": ["one.yaml", "one.yaml"]})
    with pytest.raises(ConfigError, match="duplicate scenario names"):
        load_study(tmp_path / "study.yaml")


def test_study_file_is_not_a_scenario(config_dir):
    with pytest.raises(ConfigError, match="is a study"):
        load_scenario(config_dir / "blood_vs_solid.yaml")


def test_json_schema_describes_scenario_and_study():
    schema = json_schema()
    props = schema["properties"]
    assert {"tumor", "car_t", "extends", "dosing", "lattice"} <= set(props)
    assert props["extends"]["type"] == "string"
    assert {"name", "tumor_type", "tumor", "dosing"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    study = json_schema("study")
    assert {"scenarios", "seed", "extends"} <= set(study["properties"])
    assert "tumor" not in study["properties"]


# ---------------------------------------------------------------------------------------------
# --scale: the scenario on F times the sites, its counts of cells scaled with them
# ---------------------------------------------------------------------------------------------
def _scaled(tmp_path, scenario: dict, scale: float) -> ScenarioConfig:
    return load_study(write_yaml(tmp_path / "s.yaml", scenario), scale=scale).scenarios[0]


def test_scale_multiplies_sites_cells_doses_in_cells_and_blood_volume(tmp_path):
    data = minimal_scenario_dict()
    data["lattice"] = {"width": 200, "height": 100}
    data["tumor"]["initial_cells"] = 5000
    data["blood"] = {"volume_ul": 10.0}
    data["dosing"]["doses"] = [{"day": 0, "cells": 2000}, {"day": 7, "effector_to_target": 0.5}]
    full = _scaled(tmp_path, data, 1.0)
    small = _scaled(tmp_path, data, 0.25)
    assert full == load_scenario(tmp_path / "s.yaml")  # scale 1 changes nothing
    assert (small.lattice.width, small.lattice.height) == (100, 50)  # each side x sqrt(0.25)
    assert small.tumor.initial_cells == 1250
    assert [d.cells for d in small.dosing.doses] == [500, None]
    assert small.dosing.doses[1].effector_to_target == 0.5  # a ratio needs no scaling
    assert small.blood.volume_ul == pytest.approx(2.5)  # CAR-T per uL stay comparable
    # what is per site, per cell or in physical units stays
    assert small.lattice.spacing_um == full.lattice.spacing_um
    assert small.car_t == full.car_t and small.time == full.time


def test_scale_follows_the_sites_the_rounded_lattice_really_has(tmp_path):
    data = minimal_scenario_dict()
    data["lattice"] = {"width": 101, "height": 101, "depth": 101, "dimensions": 3}
    data["tumor"]["initial_cells"] = 10_000
    small = _scaled(tmp_path, data, 0.1)
    side = round(101 * 0.1 ** (1 / 3))  # 47: each of three sides x 0.1^(1/3)
    assert (small.lattice.width, small.lattice.height, small.lattice.depth) == (side,) * 3
    assert small.tumor.initial_cells == round(10_000 * side ** 3 / 101 ** 3)


@pytest.mark.parametrize("scale", [0, -1, 101, "big", True])
def test_scale_out_of_range_names_the_file_and_the_option(tmp_path, scale):
    path = write_yaml(tmp_path / "s.yaml", minimal_scenario_dict())
    with pytest.raises(ConfigError, match=r"s\.yaml: --scale: must be a number > 0"):
        load_study(path, scale=scale)


def test_scale_that_makes_a_side_too_long_is_refused(tmp_path):
    data = minimal_scenario_dict()
    data["lattice"] = {"width": 200_000, "height": 3}
    with pytest.raises(ConfigError, match=r"--scale: lattice.width would be 2000000 sites"):
        load_study(write_yaml(tmp_path / "s.yaml", data), scale=100)
