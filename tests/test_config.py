"""The experiment config and the algorithms' options: core fields plus ``protocol`` (the chosen algorithm's
options), validation messages that name the option, notes for settings that have no effect, TOML round trips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from plexus.config import Config, algorithm_options, config_from_mapping, load_toml, resolve
from plexus.errors import ConfigError
from plexus.protocol.dpsgd import DPSGDOptions
from plexus.protocol.epidemic import EpidemicOptions
from plexus.protocol.fedavg import FedAvgOptions
from plexus.protocol.options import OptionError, build
from plexus.protocol.plexus import PlexusOptions


def resolved(notes: list[str] | None = None, **values: object) -> Config:
    return resolve(config_from_mapping(values), notes)


# ------------------------------------------------------------------------------------------------ Config
def test_non_core_settings_go_into_protocol_and_read_back_as_attributes() -> None:
    config = config_from_mapping({"nodes": 20, "sample_size": "4", "success_fraction": 0.5, "seed": "3"})
    assert config.nodes == 20 and config.seed == 3
    assert config.protocol == {"sample_size": 4, "success_fraction": 0.5}
    assert config.sample_size == 4  # reads protocol
    with pytest.raises(AttributeError, match="no setting 'topology'"):
        config.topology  # noqa: B018
    assert config.as_mapping()["sample_size"] == 4 and config.as_mapping()["nodes"] == 20


def test_replace_routes_option_names_into_protocol() -> None:
    base = Config(nodes=12)
    changed = base.replace(sample_size=4, rounds=3)
    assert changed.protocol == {"sample_size": 4} and changed.rounds == 3 and changed.nodes == 12
    assert base.protocol == {} and base.rounds is None  # a copy
    assert changed.replace(success_fraction=0.5).protocol == {"sample_size": 4, "success_fraction": 0.5}


def test_config_from_mapping_accepts_a_protocol_table() -> None:
    config = config_from_mapping({"algorithm": "dpsgd", "protocol": {"topology": "ring"}, "mixing": "uniform"})
    assert config.protocol == {"topology": "ring", "mixing": "uniform"}


def test_an_unknown_option_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'sample_szie' \(did you mean 'sample_size'\?\)"):
        config_from_mapping({"sample_szie": 3})
    with pytest.raises(ConfigError, match="unknown option 'zzz'$"):
        config_from_mapping({"zzz": 3})


def test_resolve_refuses_an_option_no_algorithm_declares() -> None:
    with pytest.raises(ConfigError, match="sample_szie"):
        resolve(Config().replace(sample_szie=3))


def test_bad_values_name_the_option_and_the_source() -> None:
    with pytest.raises(OptionError, match="command line: fanout = 'x' is not a valid int"):
        config_from_mapping({"fanout": "x"}, "command line")
    with pytest.raises(ConfigError, match="seed = 'a' is not a valid int"):
        config_from_mapping({"seed": "a"})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"success_fraction": 0}, "success_fraction = 0: must be > 0"),
        ({"success_fraction": 1.5}, "success_fraction = 1.5: must be <= 1"),
        ({"success_fraction": "nan"}, "success_fraction = nan: must be a number"),
        ({"sample_size": 0}, "sample_size = 0: must be >= 1"),
        ({"nodes": 5, "sample_size": 13}, r"sample_size = 13 exceeds nodes = 5 \(s must be <= the number of nodes\)"),
        ({"algorithm": "fedavg", "nodes": 5, "sample_size": 6}, "sample_size = 6 exceeds nodes = 5"),
        ({"aggregator_sample": "previous"}, "aggregator_sample = 'previous': must be one of 'next', 'current'"),
        ({"weighting": "loss"}, "weighting = 'loss': must be one of 'uniform', 'samples'"),
        ({"algorithm": "dpsgd", "nodes": 11, "topology": "regular:3"}, "regular:3"),
        ({"algorithm": "dpsgd", "nodes": 5, "topology": "regular:5"}, "degree must be below the number of nodes"),
        ({"algorithm": "dpsgd", "topology": "star"}, "'star'"),
        ({"algorithm": "gossip", "round_timeout": -1}, "round_timeout = -1: must be > 0"),
        ({"algorithm": "el-local", "nodes": 8, "fanout": 0}, "fanout = 0: must be >= 1"),
        ({"algorithm": "el-oracle", "nodes": 8, "fanout": 8}, "fanout = 8: must be at most nodes - 1 = 7"),
        ({"stall_timeout": -5}, "stall_timeout = -5.0: must be a positive number"),
        ({"compute_model": "per-batch"}, "compute_model = 'per-batch': must be one of per-sample, per-step"),
        ({"algorithm": "nope"}, "unknown algorithm 'nope'"),
    ],
)
def test_impossible_options_are_refused_naming_the_option(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolved(**values)


def test_resolve_fills_presets_and_the_algorithms_defaults() -> None:
    config = resolved(algorithm="plexus")
    assert config.protocol == {"sample_size": 13, "success_fraction": 0.8, "aggregator_sample": "next",
                               "weighting": "uniform", "membership": "static", "aggregators": 1,
                               "inactivity_threshold": 1000, "ping_timeout": 5.0, "announce_fanout": None,
                               "aggregation_timeout": None, "min_models": 1, "recovery_timeout": None}
    assert config.stall_timeout == 3600.0 and config.compute_model == "per-sample" and config.plugin is None
    assert config.churn is None
    assert resolved(algorithm="dpsgd").protocol == {"topology": "regular:10", "mixing": "uniform",
                                                    "wait_timeout": None}
    assert resolved(algorithm="gossip").protocol == {"round_timeout": 60.0}
    assert resolved(algorithm="el-local").protocol == {"sample_size": 13, "fanout": None, "wait_timeout": None}


def test_algorithm_options_builds_the_options_instance() -> None:
    options = algorithm_options(resolved(algorithm="fedavg", nodes=30, sample_size=5, local_steps=2))
    assert options == FedAvgOptions(local_steps=2, nodes=30, sample_size=5, success_fraction=0.8,
                                    weighting="uniform")
    el = algorithm_options(resolved(algorithm="el-oracle", nodes=30, sample_size=5, seed=4))
    assert isinstance(el, EpidemicOptions) and el.peers == 5 and el.seed == 4
    assert algorithm_options(resolved(algorithm="el-oracle", nodes=30, fanout=2)).peers == 2


def test_build_checks_every_field_and_the_inherited_ones() -> None:
    experiment = {"local_steps": 1, "nodes": 10, "seed": 0}
    assert build(DPSGDOptions, {"topology": "ring"}, experiment).topology == "ring"
    with pytest.raises(OptionError, match="the experiment does not set nodes"):
        build(PlexusOptions, {}, {"local_steps": 1})
    with pytest.raises(OptionError, match="sample_size = 2.5 is not a valid int"):
        build(PlexusOptions, {"sample_size": 2.5}, experiment)
    with pytest.raises(OptionError, match="sample_size = True is not a valid int"):
        build(PlexusOptions, {"sample_size": True}, experiment)
    # a preset applies when the option is not given, and is checked like a given value
    assert build(PlexusOptions, {}, experiment, presets={"sample_size": 4}).sample_size == 4
    with pytest.raises(OptionError, match="sample_size = 40 exceeds nodes = 10"):
        build(PlexusOptions, {}, experiment, presets={"sample_size": 40})


# ------------------------------------------------------------------------------------------------ notes
def test_options_the_algorithm_does_not_use_are_dropped_with_a_note() -> None:
    notes: list[str] = []
    config = resolved(notes, algorithm="dpsgd", sample_size=4, fanout=3, topology="ring")
    assert config.protocol == {"topology": "ring", "mixing": "uniform", "wait_timeout": None}
    assert "option sample_size = 4 has no effect on dpsgd (it applies to el-local, el-oracle, fedavg, plexus)" in notes
    assert "option fanout = 3 has no effect on dpsgd (it applies to el-local, el-oracle)" in notes
    assert len(notes) == 2


def test_core_settings_without_effect_get_a_note() -> None:
    notes: list[str] = []
    resolved(notes, algorithm="plexus", eval_nodes=3, server_bandwidth=1e6, alpha=2.0, latency_values="one-way",
             topology="ring")
    assert notes == [
        "option topology = 'ring' has no effect on plexus (it applies to dpsgd)",
        "--alpha and --beta have no effect on task digits (they shape the synthetic task)",
        "--latency-values has no effect without --latency-matrix",
        "eval_nodes = 3 has no effect: plexus reports global models; node models are not evaluated",
        "server_bandwidth = 1000000.0 has no effect: plexus has no server",
    ]
    notes = []
    resolved(notes, algorithm="fedavg", server_bandwidth=1e6)
    resolved(notes, algorithm="gossip", eval_nodes=3, eval_interval=10.0)
    assert notes == []


def test_a_config_without_unused_settings_has_no_notes() -> None:
    for name in ("plexus", "fedavg", "dpsgd", "gossip", "el-local", "el-oracle"):
        notes: list[str] = []
        resolved(notes, algorithm=name, nodes=20)
        assert notes == [], name


# ------------------------------------------------------------------------------------------------ TOML
def test_the_resolved_config_round_trips_through_toml(tmp_path: Path) -> None:
    config = resolved(algorithm="gossip", round_timeout=12.5, stall_timeout="inf", compute_model="per-step",
                      server_bandwidth="inf")
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml(), encoding="utf-8")
    text = path.read_text()
    assert "[protocol]\nround_timeout = 12.5" in text and "[system]" in text
    again = resolve(config_from_mapping(load_toml(path)))
    assert again == config
    assert again.stall_timeout == math.inf and again.server_bandwidth == math.inf


def test_a_toml_file_with_an_unknown_protocol_option_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[protocol]\nfan_out = 3\n", encoding="utf-8")
    expected = r"\[protocol\] fan_out: unknown option 'fan_out' \(did you mean 'fanout'\?\)"
    with pytest.raises(ConfigError, match=expected):
        load_toml(path)
