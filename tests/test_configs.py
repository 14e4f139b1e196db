"""Every YAML in configs/ parses against the CLI it is written for: `fit` at the top level,
`benchmark` in configs/benchmark/."""

import sys
from pathlib import Path

import pytest
import yaml

from bert2textcnn.cli import main, resolve_scheme
from bert2textcnn.distill.schemes import SCHEMES

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
BENCHMARK_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "benchmark").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses(config, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bert2textcnn"])  # pytest's own flags are not ours
    scheme = resolve_scheme(["fit", "--config", str(config)])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert f"scheme: {scheme}" in capsys.readouterr().out


def test_scheme_flag_beats_config_file():
    assert resolve_scheme(["fit", "--config", str(CONFIGS[0]), "--scheme", "student"]) == "student"
    assert resolve_scheme(["fit"]) == "joint_isolated"


@pytest.mark.parametrize("config", BENCHMARK_CONFIGS, ids=lambda p: p.name)
def test_benchmark_config_parses(config, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bert2textcnn"])
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "schemes:" in capsys.readouterr().out


def test_defaults_yaml_restates_the_code_defaults(capsys, monkeypatch):
    """configs/defaults.yaml claims to hold the values the code uses when no config is given."""
    monkeypatch.setattr(sys, "argv", ["bert2textcnn"])
    written = yaml.safe_load((CONFIGS[0].parent / "defaults.yaml").read_text(encoding="utf-8"))
    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])  # the parser's defaults: the code's, with no config given
    code = yaml.safe_load(capsys.readouterr().out)
    assert code["seed_everything"] == written["seed_everything"]
    for group in ("trainer", "data"):
        assert {key: code[group][key] for key in written[group]} == written[group], group


SCHEME_CONFIGS = [config for config in CONFIGS if config.stem in SCHEMES]


@pytest.mark.parametrize("config", SCHEME_CONFIGS, ids=lambda p: p.name)
def test_a_scheme_yaml_restates_that_schemes_code_defaults(config, capsys, monkeypatch):
    """configs/<scheme>.yaml documents the scheme's defaults; a default changed in the code must
    change there too (a value it means to differ belongs in another file, like offline_transfer)."""
    monkeypatch.setattr(sys, "argv", ["bert2textcnn"])
    written = yaml.safe_load(config.read_text(encoding="utf-8"))
    with pytest.raises(SystemExit):
        main(["fit", "--scheme", config.stem, "--print_config"])
    code = yaml.safe_load(capsys.readouterr().out)
    for group in ("model", "data"):  # a scheme's own data defaults too (a joint scheme's transfer set)
        assert {key: code[group][key] for key in written.get(group, {})} == written.get(group, {}), group


@pytest.mark.parametrize(
    ("scheme", "listed", "absent"),
    [
        ("student", ["--model.student_layers", "--model.compare_to"], ["--model.alpha", "--model.teacher_lr"]),
        ("teacher", ["--model.teacher_lr"], ["--model.student", "--model.alpha", "--model.compare_to"]),
        (
            "offline",
            ["--model.alpha", "--model.cache_dir"],
            ["--model.teacher_lr", "--model.beta", "--model.tail_epochs"],
        ),
        (
            "joint_isolated",
            ["--model.teacher_lr", "--model.kd_warmup", "--model.teacher_epochs", "--model.tail_kd"],
            ["--model.beta", "--model.cache_dir"],
        ),
        ("joint_coupled", ["--model.beta"], ["--model.historical", "--model.cache_dir"]),
        ("multi_teacher", ["--model.historical", "--model.teacher_checkpoint"], ["--model.beta"]),
    ],
)
def test_each_schemes_help_lists_only_the_options_it_uses(scheme, listed, absent, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bert2textcnn"])
    with pytest.raises(SystemExit):
        main(["fit", "--scheme", scheme, "--help"])
    shown = capsys.readouterr().out
    assert all(f"{option} " in shown for option in listed), listed
    assert not any(f"{option} " in shown for option in absent), absent


def test_an_option_the_scheme_does_not_take_is_refused_by_name(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bert2textcnn"])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--scheme", "student", "--model.alpha", "0.3", "--print_config"])
    assert exit_info.value.code == 2
    assert "model.alpha" in capsys.readouterr().err
