"""Comparison of runs (TTA / CTA / RTA, targets, ratios vs the best DL run) on hand-made results folders."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from plexus.errors import ConfigError, DataError
from plexus.metrics.analysis import compare, results_folders
from plexus.protocol.registry import algorithms
from plexus.studies import expand_lists, split_list


def make_run(
    root: Path,
    name: str,
    algorithm: str,
    rows: list[tuple[float, float, int, float]],
    metric: str = "accuracy",
    higher_is_better: bool = True,
    std: float = 0.0,
    config: dict[str, object] | None = None,
    durations: list[float] | None = None,
    traits: dict[str, object] | None = None,
) -> Path:
    """A results folder with rows (time_s, value, bytes_total, train_seconds_total), one per evaluation.

    summary.json records the algorithm's traits as a run does: the registered algorithm's, unless given
    (``traits={}`` makes a folder from before traits were recorded)."""
    folder = root / name
    folder.mkdir(parents=True)
    if traits is None:
        known = algorithms().get(algorithm)
        traits = known.traits.as_dict() if known is not None else {}
    summary = {"algorithm": algorithm, "task": "digits", "nodes": 10, "seed": 0, "metric": metric,
               "higher_is_better": higher_is_better, "virtual_seconds": rows[-1][0] if rows else 0.0,
               "bytes_total": rows[-1][2] if rows else 0, "train_seconds_total": rows[-1][3] if rows else 0.0}
    if traits:
        summary["traits"] = traits
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    with (folder / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time_s", "round", metric, f"{metric}_std", "loss", "bytes_total", "messages_total",
                         "train_seconds_total"])
        for i, (t, value, sent, train) in enumerate(rows, start=1):
            writer.writerow([t, i, value, std, 1.0, sent, i * 3, train])
    with (folder / "rounds.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round", "node", "end_time_s", "duration_s"])
        elapsed = 0.0
        for i, duration in enumerate(durations if durations is not None else [10.0, 12.0, 9.0, 30.0], 1):
            elapsed += duration
            writer.writerow([i, "", elapsed, duration])
    options = {"algorithm": algorithm, "seed": 0, "topology": "regular:10", **(config or {})}
    lines = ["[run]"] + [f"{k} = {json.dumps(v)}" for k, v in options.items()]
    (folder / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def row_of(comparison, label):  # type: ignore[no-untyped-def]
    return next(r for r in comparison.rows if r.label == label)


def test_tta_cta_rta_at_first_evaluation_reaching_the_target(tmp_path: Path) -> None:
    run = make_run(tmp_path, "p", "plexus", [(10, 0.5, 100, 4.0), (20, 0.8, 250, 9.0), (30, 0.9, 400, 15.0)])
    comparison = compare([run], target=0.75)
    row = comparison.rows[0]
    assert (row.tta_s, row.cta_bytes, row.rta_s) == (20, 250, 9.0)
    assert row.best == 0.9 and row.final == 0.9
    assert comparison.target_given


def test_default_target_is_the_best_every_run_reaches(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", "plexus", [(10, 0.6, 100, 1.0), (20, 0.9, 200, 2.0), (30, 0.85, 300, 3.0)])
    b = make_run(tmp_path, "b", "fedavg", [(5, 0.7, 50, 1.0), (15, 0.8, 150, 2.0), (25, 0.78, 250, 3.0)])
    comparison = compare([a, b])
    assert comparison.target == 0.8 and not comparison.target_given
    assert row_of(comparison, "plexus").tta_s == 20
    assert row_of(comparison, "fedavg").tta_s == 15
    # accuracy against FedAvg: best and final differences
    assert row_of(comparison, "plexus").best_vs_fedavg == pytest.approx(0.1)
    assert row_of(comparison, "plexus").final_vs_fedavg == pytest.approx(0.07)
    assert row_of(comparison, "fedavg").best_vs_fedavg == 0.0


def test_ratios_against_the_best_dl_run_and_distinct_labels(tmp_path: Path) -> None:
    plexus = make_run(tmp_path, "p", "plexus", [(10, 0.5, 10, 1.0), (40, 0.8, 20, 2.0)])
    ring = make_run(tmp_path, "d1", "dpsgd", [(30, 0.8, 3000, 60.0)], config={"topology": "regular:10"})
    exp = make_run(tmp_path, "d2", "dpsgd", [(50, 0.8, 300, 80.0)], config={"topology": "one-peer-exp"})
    gossip = make_run(tmp_path, "g", "gossip", [(60, 0.8, 200, 100.0)])
    comparison = compare([plexus, ring, exp, gossip])
    labels = [r.label for r in comparison.rows]
    assert labels == ["plexus", "dpsgd (regular:10)", "dpsgd (one-peer-exp)", "gossip"]
    assert comparison.has_dl
    p = row_of(comparison, "plexus")
    # best DL: TTA 30 (regular:10), CTA 200 (gossip), RTA 60 (regular:10)
    assert p.ratios["tta"] == pytest.approx(30 / 40)
    assert p.ratios["cta"] == pytest.approx(200 / 20)
    assert p.ratios["rta"] == pytest.approx(60 / 2.0)
    assert row_of(comparison, "dpsgd (regular:10)").ratios["tta"] == 1.0
    assert row_of(comparison, "gossip").ratios["cta"] == 1.0
    assert "cta_vs_best_dl" in comparison.columns()
    text = comparison.to_text()
    assert "10.0x" in text and "30.0x" in text


def test_the_registry_traits_mark_the_dl_baselines() -> None:
    table = algorithms()
    for name in ("dpsgd", "gossip", "el-local", "el-oracle"):
        assert table[name].traits.decentralized, name
    assert not table["plexus"].traits.decentralized and not table["fedavg"].traits.decentralized
    builtin = ("plexus", "fedavg", "dpsgd", "gossip", "el-local", "el-oracle")
    assert [name for name in builtin if table[name].traits.uses_topology] == ["dpsgd"]


def test_the_dl_group_and_topology_labels_come_from_the_recorded_traits(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", "plexus", [(10, 0.6, 100, 1.0), (20, 0.9, 200, 2.0)])
    # a folder whose summary records no traits (written before traits existed) is neither DL nor topology-based,
    # whatever its algorithm is called
    old = make_run(tmp_path, "old", "dpsgd", [(10, 0.9, 1000, 10.0)], traits={})
    comparison = compare([a, old])
    assert [r.label for r in comparison.rows] == ["plexus", "dpsgd"]
    assert not comparison.has_dl
    # and a plug-in's folder that declares itself decentralized joins the DL group
    custom = make_run(tmp_path, "custom", "my-dl", [(10, 0.9, 1000, 10.0)],
                      traits={"decentralized": True, "uses_topology": True})
    comparison = compare([a, custom])
    assert comparison.has_dl and [r.label for r in comparison.rows] == ["plexus", "my-dl (regular:10)"]
    assert row_of(comparison, "plexus").ratios["cta"] == pytest.approx(1000 / 200)


def test_no_dl_run_means_no_ratio_columns(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", "plexus", [(10, 0.6, 100, 1.0)])
    comparison = compare([a])
    assert not comparison.has_dl
    assert not any("vs_best_dl" in c for c in comparison.columns())
    assert "vs best DL" not in comparison.to_text()
    assert not comparison.has_fedavg and not any("fedavg" in c for c in comparison.columns())


def test_lower_is_better_metric(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", "plexus", [(10, 1.5, 100, 1.0), (20, 0.9, 200, 2.0), (30, 0.95, 300, 3.0)],
                 metric="rmse", higher_is_better=False)
    b = make_run(tmp_path, "b", "fedavg", [(10, 1.2, 100, 1.0), (20, 1.0, 200, 2.0), (30, 1.05, 300, 3.0)],
                 metric="rmse", higher_is_better=False)
    comparison = compare([a, b])
    assert comparison.target == 1.0  # the worst of the runs' lowest values
    assert row_of(comparison, "plexus").tta_s == 20 and row_of(comparison, "plexus").best == 0.9
    assert row_of(comparison, "fedavg").tta_s == 20
    assert "best_rmse" in comparison.columns()
    assert "<=" in comparison.target_line()
    given = compare([a, b], target=0.92)
    assert row_of(given, "plexus").tta_s == 20 and row_of(given, "fedavg").tta_s is None


def test_a_run_that_never_reaches_the_target_gets_empty_cells(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", "plexus", [(10, 0.6, 100, 1.0), (20, 0.9, 200, 2.0)])
    d = make_run(tmp_path, "d", "dpsgd", [(10, 0.5, 1000, 10.0), (20, 0.7, 2000, 20.0)])
    comparison = compare([a, d], target=0.8)
    dl = row_of(comparison, "dpsgd (regular:10)")
    assert dl.tta_s is None and dl.cta_bytes is None and dl.rta_s is None
    # no DL run reached the target: the ratio columns exist but are empty
    assert row_of(comparison, "plexus").ratios == {"tta": None, "cta": None, "rta": None}
    out = tmp_path / "out"
    comparison.write(out, figures=False)
    with (out / "comparison.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["tta_s"] == "" and rows[1]["cta_bytes"] == "" and rows[1]["tta_vs_best_dl"] == ""
    assert rows[0]["tta_s"] == "20" or float(rows[0]["tta_s"]) == 20
    assert "| - |" in (out / "comparison.md").read_text()


def test_identical_configs_fall_back_to_folder_names(tmp_path: Path) -> None:
    a = make_run(tmp_path, "first", "plexus", [(10, 0.6, 100, 1.0)])
    b = make_run(tmp_path, "second", "plexus", [(10, 0.7, 100, 1.0)])
    c = make_run(tmp_path, "third", "plexus", [(10, 0.7, 100, 1.0)], config={"seed": 4})
    labels = [r.label for r in compare([a, b, c]).rows]
    assert len(set(labels)) == 3
    assert labels[2] == "plexus (seed=4)"
    assert labels[0] == "plexus (seed=0) [first]"


def test_figures_are_written(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", "plexus", [(10, 0.6, 100, 1.0), (20, 0.9, 2000, 20.0)])
    d = make_run(tmp_path, "d", "dpsgd", [(10, 0.5, 1000, 10.0), (20, 0.8, 20000, 200.0)], std=0.05,
                 durations=[1.0, 100.0, 3.0])
    written = compare([a, d]).write(tmp_path / "out")
    names = {p.name for p in written}
    assert {"comparison.csv", "comparison.md", "convergence.png", "round-durations.png"} <= names
    for name in ("convergence.png", "round-durations.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000


def test_no_rounds_no_duration_figure(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", "plexus", [(10, 0.6, 100, 1.0)], durations=[])
    written = compare([a]).write(tmp_path / "out")
    assert {p.name for p in written} == {"comparison.csv", "comparison.md", "convergence.png"}


def test_errors_name_the_folder_or_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        compare([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a results folder"):
        compare([tmp_path / "empty"])
    bad = make_run(tmp_path, "bad", "plexus", [(10, 0.6, 100, 1.0)])
    (bad / "metrics.csv").write_text("time_s,round,accuracy,bytes_total,train_seconds_total\n1,1,oops,3,4\n")
    with pytest.raises(DataError, match=r"bad.metrics\.csv, line 2: accuracy"):
        compare([bad])
    (bad / "metrics.csv").write_text("time_s,round,accuracy\n1,1,0.5\n")
    with pytest.raises(DataError, match="column 'bytes_total' is missing"):
        compare([bad])
    (bad / "metrics.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="bad"):
        compare([bad])
    ok = make_run(tmp_path, "ok", "plexus", [(10, 0.6, 100, 1.0)])
    other = make_run(tmp_path, "other", "plexus", [(10, 0.6, 100, 1.0)], metric="rmse", higher_is_better=False)
    with pytest.raises(DataError, match="different metrics"):
        compare([ok, other])
    (ok / "summary.json").write_text("{not json")
    with pytest.raises(DataError, match="summary.json"):
        compare([ok])


def test_a_study_folder_stands_for_its_runs(tmp_path: Path) -> None:
    make_run(tmp_path / "study", "plexus", "plexus", [(10, 0.6, 100, 1.0)])
    make_run(tmp_path / "study", "fedavg", "fedavg", [(10, 0.6, 100, 1.0)])
    (tmp_path / "study" / "comparison").mkdir()
    folders = results_folders([tmp_path / "study"])
    assert sorted(f.name for f in folders) == ["fedavg", "plexus"]


def test_run_without_evaluations_is_not_the_default_target(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", "plexus", [(10, 0.6, 100, 1.0)])
    b = make_run(tmp_path, "b", "fedavg", [])
    comparison = compare([a, b])
    assert comparison.target == 0.6
    assert math.isnan(row_of(comparison, "fedavg").best)
    assert row_of(comparison, "fedavg").tta_s is None


# ------------------------------------------------------------------ study planning (no simulation)
def test_lists_expand_into_runs() -> None:
    runs = expand_lists({"algorithm": "plexus,dpsgd,gossip", "topology": "regular:10,one-peer-exp", "seed": 3})
    names = [name for name, _ in runs]
    assert names == ["plexus", "dpsgd-regular-10", "dpsgd-one-peer-exp", "gossip"]
    options = dict(runs)
    assert options["dpsgd-one-peer-exp"]["topology"] == "one-peer-exp"
    assert "topology" not in options["plexus"] and options["plexus"]["seed"] == 3
    single = dict(expand_lists({"algorithm": "dpsgd,plexus", "topology": "ring"}))
    assert single["dpsgd"]["topology"] == "ring"


def test_bad_lists_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        split_list("plexus,plexus", "--algorithm")
    with pytest.raises(ConfigError, match="empty item"):
        split_list("plexus,", "--algorithm")
    with pytest.raises(ConfigError, match="need an algorithm that uses one"):
        expand_lists({"algorithm": "plexus,fedavg", "topology": "ring,full"})
