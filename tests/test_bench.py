"""The NAS-Bench-201 table as a tabular benchmark (on three of its rows)."""

from __future__ import annotations

import itertools

import numpy as np
import optuna
import pytest

from optnas.bench import nb201
from optnas.samplers import SAMPLERS

HEADER = "index,arch_str,ops6,c10_test200_fulltrain,c100_test200,in16_test200,c10valid_val200,c10valid_test200,c100_val200,in16_val200,c10valid_train_time200_s,c10valid_val12,c100_val12,in16_val12,c10_test12,c10_params_M,c10_latency_s,c100_params_M,c100_latency_s,in16_params_M,in16_latency_s\n"  # noqa: E501
ROWS = (
    "0,|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|,421211,85.86333333333334,52.913333294677734,26.6333332739936,81.9827,81.52,52.7,28.2111,1444.2186,63.36399998046875,31.840000003051756,18.466666661580405,69.55,0.129306,0.0139359758611311,0.135156,0.013182918230692545,0.136456,0.012976543108622235\n"  # noqa: E501
    "1,|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|,334131,93.66000000000001,70.29333326822916,44.03333332316081,90.7693,90.51333333,69.8267,44.4889,2169.641376,82.83399999389648,57.79999996948242,35.433333353678385,88.22,0.802426,0.016852585892928276,0.808276,0.015363384176183631,0.809576,0.013773989677429198\n"  # noqa: E501
    "2,|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|,433444,85.74000000000001,54.866666630045565,27.25555556233724,81.9107,81.84,54.3,27.6333,2267.177677,63.55999999633789,29.419999963378906,18.46666667175293,69.95,0.559386,0.014427971421626575,0.565236,0.01402865074299,0.566536,0.012760758399963379\n"  # noqa: E501
)


@pytest.fixture
def table_file(tmp_path):
    path = tmp_path / "nb201.csv"
    path.write_text(HEADER + ROWS)
    return path


def test_rows_are_looked_up_by_the_cell_a_trial_suggests(table_file):
    table = nb201.Table.load(table_file, "cifar10")
    assert len(table) == 3
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"  # noqa: E501
    row = table.lookup(nb201.suggest(optuna.trial.FixedTrial(nb201.parse(arch))))
    assert row == 1 and table.arch[row] == arch
    assert table.val12[row] == pytest.approx(82.834, abs=1e-3)
    assert table.test200[row] == pytest.approx(93.66)
    assert table.params[row] == 802_426
    assert table.latency[row] == pytest.approx(16.8526, abs=1e-4)


@pytest.mark.parametrize(
    ("dataset", "val12", "params"),
    [("cifar100", 31.84, 135_156), ("ImageNet16-120", 18.4667, 136_456)],
)
def test_each_dataset_reads_its_columns(table_file, dataset, val12, params):
    table = nb201.Table.load(table_file, dataset)
    assert table.val12[0] == pytest.approx(val12, abs=1e-4)
    assert table.params[0] == params


def test_a_cell_missing_from_the_table_is_a_key_error(table_file):
    table = nb201.Table.load(table_file)
    with pytest.raises(KeyError):
        table.lookup({name: "none" for name in ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")})


def test_bad_tables_and_datasets_are_named(tmp_path, table_file):
    with pytest.raises(ValueError, match="Unknown dataset 'svhn'; valid names: cifar10"):
        nb201.Table.load(table_file, "svhn")
    with pytest.raises(FileNotFoundError, match="No NAS-Bench-201 table at .*missing.csv"):
        nb201.Table.load(tmp_path / "missing.csv")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="is not a NAS-Bench-201 table"):
        nb201.Table.load(other)


OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")


def _synthetic_row(index: int, ops: tuple[str, ...]) -> str:
    """A cell whose 12-epoch accuracy grows with its 3x3 convolutions; its test accuracy
    prefers 1x1 ones, so the reported result is not the signal."""
    val12 = 50 + 5 * ops.count("nor_conv_3x3") + 2 * ops.count("nor_conv_1x1")
    test200 = 80 + ops.count("nor_conv_1x1") + 0.1 * ops.count("nor_conv_3x3")
    arch = "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)
    digits = "".join(str(OPS.index(o)) for o in ops)
    fields = [index, arch, digits, test200, 0, 0, 0, 0, 0, 0, 2000, val12, 0, 0, 0]
    return ",".join(map(str, fields + [1.0, 0.01, 1.0, 0.01, 1.0, 0.01])) + "\n"


@pytest.fixture(scope="module")
def full_table(tmp_path_factory):
    """Every cell of the space, each costing 2000 * 12 / 200 = 120 simulated seconds."""
    rows = [_synthetic_row(i, ops) for i, ops in enumerate(itertools.product(OPS, repeat=6))]
    path = tmp_path_factory.mktemp("nb201") / "nb201.csv"
    path.write_text(HEADER + "".join(rows))
    return nb201.Table.load(path)


def test_a_run_spends_the_budget_and_reports_the_test_accuracy_of_the_best_signal(
    full_table,
):
    evaluated = []

    class Recording(optuna.samplers.RandomSampler):
        def after_trial(self, study, trial, state, values):
            evaluated.append(full_table.lookup(trial.params))

    run = nb201.simulate(Recording(seed=0), full_table, budget=11_950)
    assert len(run.spent) == len(evaluated) == 100  # the evaluation crossing the budget counts
    assert run.spent[-1] == pytest.approx(12_000)
    best = max(evaluated, key=lambda row: full_table.val12[row])
    assert run.result == full_table.test200[best]
    assert run.reported_at(120) == full_table.test200[evaluated[0]]
    assert np.isnan(run.reported_at(119))


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_runs_the_protocol(full_table, name):
    runs = nb201.compare([name], full_table, runs=2, budget=1_200, seed=3)[name]
    assert [len(r.spent) for r in runs] == [10, 10]
    assert all(80 <= r.result <= 87 for r in runs)


def test_auto_finds_the_best_signal_of_the_space(full_table):
    run = nb201.simulate(nb201.create_sampler("auto", seed=0), full_table)
    assert run.result == pytest.approx(80.6)  # all six edges 3x3 convolutions


def test_a_budget_must_be_positive(full_table):
    with pytest.raises(ValueError, match="budget must be positive"):
        nb201.simulate(optuna.samplers.RandomSampler(), full_table, budget=0)


@pytest.mark.parametrize("costs", [True, False])
def test_trials_record_their_parameter_count_as_a_search_would(full_table, costs):
    recorded = []

    class Recording(optuna.samplers.RandomSampler):
        def after_trial(self, study, trial, state, values):
            recorded.append((trial.user_attrs.get("params"), full_table.lookup(trial.params)))

    nb201.simulate(Recording(seed=0), full_table, budget=600, costs=costs)
    assert recorded
    for count, row in recorded:
        assert count == (full_table.params[row] if costs else None)
