"""Every YAML in configs/ parses against the CLI it is written for: `fit` at the top level,
`benchmark` in configs/benchmark/."""

import sys
from pathlib import Path

import pytest
import yaml

from bert2textcnn.cli import main, resolve_scheme

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
