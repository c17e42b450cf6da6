from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from conftest import Explodes, enqueued_study, tiny_space
from torch import nn

import optnas
from optnas.data import Dataset, load

MEMORY = "sqlite:///:memory:"
STATE = optuna.trial.TrialState


def test_end_to_end_multi_objective_on_digits(in_tmp):
    study = optnas.search(
        "convnet", "digits", ("accuracy", "params", "flops"), n_trials=3, epochs=2, seed=0
    )
    assert isinstance(study, optuna.Study)
    assert study.metric_names == ["accuracy", "params", "flops"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    assert (in_tmp / "studies" / "convnet-digits-accuracy-params-flops.db").is_file()
    for trial in study.trials:
        assert trial.state == STATE.COMPLETE
        attrs = trial.user_attrs
        assert attrs["arch"].startswith("stem")
        assert attrs["flops"] == 2 * attrs["macs"] > 0
        assert attrs["latency"] > 0 and attrs["latency_batch_size"] == 1
        assert attrs["arch_key"] == optnas.spaces.convnet.key(trial.params)
        assert trial.values[1:] == [attrs["params"], attrs["flops"]]
        assert len(attrs["val_curve"]) == 2 and attrs["val_curve"][-1] == trial.values[0]
    assert study.best_trials


def test_auto_space_on_tabular_data_trades_accuracy_for_latency(in_tmp):
    study = optnas.search(
        "auto", "wine", ("accuracy", "latency"), n_trials=3, epochs=5, seed=0, latency_batch_size=8
    )
    assert study.study_name == "mlp-wine-accuracy-latency"
    for trial in study.trials:
        assert "n_layers" in trial.params
        assert trial.values[1] == trial.user_attrs["latency"] > 0
        assert trial.user_attrs["latency_batch_size"] == 8
    assert max(t.values[0] for t in study.trials) > 0.8


def test_nb201_space_searches_digits():
    study = optnas.search("nb201", "digits", n_trials=1, epochs=1, storage=MEMORY, seed=0)
    trial = study.trials[0]
    assert trial.state == STATE.COMPLETE
    assert trial.user_attrs["arch"] == optnas.spaces.nb201.describe(trial.params)
    assert trial.user_attrs["arch"].startswith("|") and "~0|+|" in trial.user_attrs["arch"]


def test_latency_budget_skips_slow_networks():
    study = optnas.search(
        tiny_space, "digits", n_trials=2, epochs=1, storage=MEMORY, budgets={"latency": 1e-6}
    )
    for trial in study.trials:
        assert trial.state == STATE.PRUNED
        assert trial.user_attrs["pruned_reason"].startswith("over budget: latency")
        assert trial.constraints["latency"] > 0


def test_duplicate_architectures_are_not_retrained_nor_counted():
    study = optnas.search(
        tiny_space, "digits", ("accuracy", "params"), n_trials=6, epochs=2, storage=MEMORY, seed=0
    )
    trained = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 2  # tiny_space has two architectures...
    assert len(study.trials) == 2 + 50  # ...then 50 untrained in a row: exhausted, stop
    for trial in study.trials:
        attrs = trial.user_attrs
        if "duplicate_of" not in attrs:
            assert trial.state == STATE.COMPLETE and attrs["train_seconds"] > 0
            continue
        first = study.trials[attrs["duplicate_of"]]
        assert first.user_attrs["arch_key"] == attrs["arch_key"] and first.number < trial.number
        assert trial.state == STATE.PRUNED and attrs["train_seconds"] == 0
        assert attrs["pruned_reason"] == (
            f"duplicate of trial {first.number} (validation accuracy "
            f"{first.values[0]:.4f}); not trained again"
        )
    assert {t.number for t in study.best_trials} <= {t.number for t in trained}
    again = optnas.search(
        tiny_space, "digits", n_trials=3, epochs=1, storage=MEMORY, seed=0, dedup=False
    )
    assert not any("duplicate_of" in t.user_attrs for t in again.trials)


@pytest.mark.parametrize(("cost", "trained"), [("params", True), ("flops", False)])
def test_a_cheaper_twin_of_a_trained_network_is_trained_not_pruned(tmp_path, cost, trained):
    # Both cells compute x (their only live edge is the skip to the output); the first
    # also holds a dead 3x3 convolution's weights, which count as parameters, not FLOPs.
    # Pruned as a duplicate, the cheaper twin's point (the same accuracy with fewer
    # parameters) was missing from the Pareto front.
    from optnas.spaces import NB201

    cells = ["|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
             "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"]  # fmt: skip
    directions = ("maximize", "minimize")
    url = enqueued_study(tmp_path, "t", [NB201.parse(c) for c in cells], directions)
    study = optnas.search({"name": "nb201", "channels": 4, "cells": 1}, "digits",
                          ("accuracy", cost), n_trials=2, epochs=1, storage=url,
                          study_name="t")  # fmt: skip
    first, twin = study.trials[:2]  # (a pruned duplicate is not a training: a third follows)
    assert first.user_attrs["arch_key"] == twin.user_attrs["arch_key"]
    assert (first.user_attrs[cost] != twin.user_attrs[cost]) == trained
    assert first.state == STATE.COMPLETE
    if trained:
        assert twin.state == STATE.COMPLETE and "duplicate_of" not in twin.user_attrs
    else:
        assert twin.state == STATE.PRUNED and twin.user_attrs["duplicate_of"] == 0


def test_gp_with_dedup_trains_every_candidate_asked_for():
    # Optuna's GP learns from completed trials only: the repeats dedup pruned never reached
    # it, it proposed the same cell on, and the search stopped "exhausted" after 13.
    study = optnas.search({"name": "nb201", "channels": 4, "cells": 1}, "digits",
                          sampler="gp", n_trials=25, epochs=1, seed=0, storage=MEMORY)  # fmt: skip
    trained = [t for t in study.trials if t.user_attrs.get("epochs_trained")]
    assert len(trained) == 25
    assert study.sampler.dropped > 0  # repeats it proposed, replaced by random cells


def test_a_duplicate_of_a_pruned_trial_is_pruned_untrained():
    def one_network(trial, spec):
        trial.suggest_int("depth", 1, 1)
        return tiny_space(optuna.trial.FixedTrial({"width": 4}), spec)

    study = optnas.search(
        one_network,
        "digits",
        n_trials=2,
        epochs=3,
        storage=MEMORY,
        pruner=optuna.pruners.ThresholdPruner(lower=1.1),
    )
    first, second = study.trials[:2]
    assert len(study.trials) == 1 + 50  # then 50 untrained in a row: the space is exhausted
    assert first.state == second.state == STATE.PRUNED
    assert "duplicate_of" not in first.user_attrs and first.user_attrs["train_seconds"] > 0
    assert second.user_attrs["train_seconds"] == 0
    assert second.user_attrs["duplicate_of"] == 0
    assert second.user_attrs["pruned_reason"] == (
        "duplicate of trial 0 (pruned after epoch 1); not trained again"
    )


def test_single_objective_reports_every_epoch_and_is_reproducible():
    runs = [
        optnas.search(
            tiny_space, "digits", n_trials=3, epochs=3, seed=1, storage=MEMORY, dedup=False
        )
        for _ in range(2)
    ]
    assert max(t.values[0] for t in runs[0].trials) > 0.8
    for trial in runs[0].trials:
        assert sorted(trial.intermediate_values) == [0, 1, 2]
        assert list(trial.intermediate_values.values()) == trial.user_attrs["val_curve"]
    assert [t.values for t in runs[0].trials] == [t.values for t in runs[1].trials]


def test_pruner_is_obeyed_with_its_reason():
    study = optnas.search(
        tiny_space,
        "digits",
        n_trials=2,
        epochs=4,
        storage=MEMORY,
        pruner=optuna.pruners.ThresholdPruner(lower=1.1),
        dedup=False,
    )
    for trial in study.trials:
        assert trial.state == STATE.PRUNED
        assert trial.user_attrs["pruned_reason"].startswith(
            "pruned by ThresholdPruner after epoch 1 of 4 at validation accuracy"
        )
        assert trial.user_attrs["params"] > 0


def test_a_trial_that_trained_every_epoch_is_never_pruned():
    # Asked after the last epoch, a pruner only threw a trained result away.
    never_enough = optuna.pruners.ThresholdPruner(lower=1.1)
    study = optnas.search(tiny_space, "digits", n_trials=2, epochs=1, storage=MEMORY,
                          pruner=never_enough, dedup=False)  # fmt: skip
    assert [t.state for t in study.trials] == [STATE.COMPLETE] * 2


def test_resuming_a_study_by_name_keeps_all_trials(in_tmp):
    for _ in range(2):
        study = optnas.search(
            tiny_space, "digits", n_trials=2, epochs=1, study_name="again", dedup=False
        )
    assert len(study.trials) == 4
    assert optuna.get_all_study_names(f"sqlite:///{in_tmp}/studies/again.db") == ["again"]


def test_resuming_with_other_objectives_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/x.db"
    optnas.search(tiny_space, "digits", n_trials=1, epochs=1, storage=url, study_name="s")
    with pytest.raises(optnas.StorageError, match=r"exists with objectives \['accuracy'\]"):
        optnas.search(
            tiny_space, "digits", ("accuracy", "params"), n_trials=1, storage=url, study_name="s"
        )


def test_other_arrays_do_not_resume_a_study_searched_on_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)).astype("float32"), np.arange(60) % 2
    url = f"sqlite:///{tmp_path}/a.db"
    kwargs = {"n_trials": 1, "epochs": 1, "storage": url, "sampler": "random"}
    optnas.search("mlp", (x, y), **kwargs)
    study = optnas.search("mlp", (x.copy(), y.copy()), **kwargs)  # the same data: resumed
    assert len(study.trials) == 2
    for other in [(x + 1, y), (x, 1 - y), (x[:, :3], y)]:
        with pytest.raises(optnas.StorageError, match=r"would change data.name: '<arrays \w+>"):
            optnas.search("mlp", other, **kwargs)
    assert len(optuna.load_study(study_name=study.study_name, storage=url).trials) == 2


def test_another_space_function_of_the_same_name_does_not_resume_the_study(tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    kwargs = {"n_trials": 1, "epochs": 1, "storage": url, "study_name": "s", "dedup": False}

    def my_space(trial, spec):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, trial.suggest_int("w", 2, 4)),
                             nn.Linear(trial.params["w"], spec.num_classes))  # fmt: skip

    first = my_space
    optnas.search(first, "digits", **kwargs)

    def my_space(trial, spec):  # noqa: F811  (the same name, another space)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, spec.num_classes))

    with pytest.raises(optnas.StorageError, match="would change space.name"):
        optnas.search(my_space, "digits", **kwargs)
    assert len(optnas.search(first, "digits", **kwargs).trials) == 2  # the same: resumed


_SPACE_MODULE = """
from torch import nn

class Block(nn.Sequential):
    def __init__(self, width, classes):
        super().__init__(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), head(width, classes))

def head(width, classes):
    return nn.Linear(width, classes)

def space(trial, spec):
    return Block(trial.suggest_int("w", 2, 4), spec.num_classes)
"""


def _script(path):
    """``path`` run as a script is: a module no import path reaches (like ``__main__``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("helped_space", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_space_whose_helpers_changed_does_not_resume_the_study(tmp_path):
    # The space function is the same; a helper of its script that it builds with is not.
    from optnas.definition import DEFINITION_ATTR, Definition

    source = tmp_path / "helped_space.py"
    source.write_text(_SPACE_MODULE)
    module = _script(source)
    kwargs = {"n_trials": 1, "epochs": 1, "storage": f"sqlite:///{tmp_path}/a.db",
              "study_name": "s", "dedup": False}  # fmt: skip
    study = optnas.search(module.space, "digits", **kwargs)
    name = Definition.from_study(study)["space"]["name"]
    assert re.fullmatch(r"<helped_space\.space [0-9a-f]{10} [0-9a-f]{10}>", name)
    # Recorded by an earlier version with the function's hash alone: resumes, upgraded.
    legacy = Definition.from_study(study).replace({"space.name": name.rsplit(" ", 1)[0] + ">"})
    study.set_user_attr(DEFINITION_ATTR, legacy.to_json())
    assert len(optnas.search(module.space, "digits", **kwargs).trials) == 2
    assert Definition.from_study(study)["space"]["name"] == name

    # An edited class (no file Python can find its source in: its methods' count) or an
    # edited function it calls.
    for old, new in [("nn.ReLU()", "nn.Tanh()"), ("nn.Linear(width, classes)", "nn.Tanh()")]:
        source.write_text(_SPACE_MODULE.replace(old, new))
        module = _script(source)
        with pytest.raises(optnas.StorageError, match="would change space.name"):
            optnas.search(module.space, "digits", **kwargs)


_HOLDING_MODULE = """
from torch import nn

def space(trial, spec, width=4):
    w = trial.suggest_int("w", width, width + 1)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, w), nn.Linear(w, spec.num_classes))

def factory(width):
    def made(trial, spec):
        return space(trial, spec, width)
    return made

class Searcher:
    def __init__(self, width):
        self.width = width

    def space(self, trial, spec):
        return space(trial, spec, self.width)

    def __call__(self, trial, spec):
        return space(trial, spec, self.width)

class Net(nn.Sequential):
    def __init__(self, trial, spec):
        super().__init__(space(trial, spec))

class Wide(nn.Sequential):
    def __init__(self, trial, spec):
        super().__init__(space(trial, spec, 8))
"""


@pytest.mark.parametrize(
    "kind", ["partial", "numpy partial", "closure", "bound method", "callable object", "class"]
)
def test_spaces_of_one_name_holding_other_values_do_not_resume_each_other(tmp_path, kind):
    # Before, every partial (or class, or bound method) was recorded by one name, and the
    # closures of one factory or objects of one class by their code alone.
    import functools

    from optnas.definition import DEFINITION_ATTR, Definition

    source = tmp_path / "holding.py"
    source.write_text(_HOLDING_MODULE)
    module = _script(source)
    make = {
        "partial": lambda width: functools.partial(module.space, width=width),
        "numpy partial": lambda width: functools.partial(module.space, width=np.int64(width)),
        "closure": module.factory,
        "bound method": lambda width: module.Searcher(width).space,
        "callable object": module.Searcher,
        "class": lambda width: module.Net if width == 4 else module.Wide,
    }[kind]
    kwargs = {"n_trials": 1, "epochs": 1, "storage": f"sqlite:///{tmp_path}/a.db",
              "study_name": "s", "dedup": False}  # fmt: skip
    study = optnas.search(make(4), "digits", **kwargs)
    with pytest.raises(optnas.StorageError, match="would change space.name"):
        optnas.search(make(6), "digits", **kwargs)
    assert len(optnas.search(make(4), "digits", **kwargs).trials) == 2  # another run: resumed

    name = Definition.from_study(study)["space"]["name"]
    legacy = {"partial": "<functools.partial 0123456789>", "class": "<builtins.type>",
              "bound method": "<builtins.method>"}  # fmt: skip
    if kind in legacy:  # As an earlier version recorded it: resumes once, then upgraded.
        old = Definition.from_study(study).replace({"space.name": legacy[kind]})
        study.set_user_attr(DEFINITION_ATTR, old.to_json())
        assert len(optnas.search(make(4), "digits", **kwargs).trials) == 3
        assert Definition.from_study(study)["space"]["name"] == name


def test_a_folder_whose_classes_changed_does_not_resume_its_study(tmp_path):
    from PIL import Image

    def folder(classes: str) -> Path:
        for c in classes:
            (tmp_path / "imgs" / c).mkdir(parents=True, exist_ok=True)
            for i in range(5):
                Image.new("RGB", (6, 6), (i * 40, 0, 0)).save(tmp_path / "imgs" / c / f"{i}.png")
        return tmp_path / "imgs"

    url = f"sqlite:///{tmp_path}/a.db"
    kwargs = {"n_trials": 1, "epochs": 1, "storage": url, "study_name": "s"}
    optnas.search(tiny_space, folder("ab"), **kwargs)
    with pytest.raises(optnas.StorageError, match=r"shape \(3, 6, 6\) in 2 classes, but "
                       r"'imgs' now holds samples of shape \(3, 6, 6\) in 3 classes"):  # fmt: skip
        optnas.search(tiny_space, folder("abc"), **kwargs)


def test_a_plain_optuna_study_of_the_same_name_is_refused_and_left_alone(tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    mine = optuna.create_study(storage=url, study_name="mine", direction="maximize")
    mine.optimize(lambda t: t.suggest_float("lr", 0, 1), n_trials=1)
    with pytest.raises(
        optnas.StorageError, match="already exists with 1 finished trials that this"
    ):
        optnas.search("mlp", "wine", n_trials=1, epochs=1, storage=url, study_name="mine")
    mine = optuna.load_study(study_name="mine", storage=url)
    assert len(mine.trials) == 1 and mine.metric_names is None and not mine.user_attrs


def test_budgets_skip_training_and_set_constraints():
    study = optnas.search(
        tiny_space,
        "digits",
        ("accuracy", "params"),
        n_trials=4,
        epochs=1,
        storage=MEMORY,
        budgets={"params": 1000},
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    for trial in study.trials:
        assert trial.state == STATE.PRUNED
        assert trial.user_attrs["pruned_reason"].startswith("over budget: params")
        assert "val_curve" not in trial.user_attrs
        assert trial.constraints["params"] == trial.user_attrs["params"] - 1000 > 0


def test_candidates_over_budget_do_not_count_as_trials():
    study = optnas.search(
        tiny_space,
        "digits",
        ("accuracy", "params"),
        n_trials=2,
        epochs=1,
        storage=MEMORY,
        budgets={"params": 3000},  # width 4 only (2,610 params; width 8 has 5,210)
        sampler=optuna.samplers.RandomSampler(seed=1),
        dedup=False,
    )
    trained = [t for t in study.trials if t.state == STATE.COMPLETE]
    assert len(trained) == 2 and study.trials[-1].state == STATE.COMPLETE
    assert all(t.params["width"] == 4 for t in trained)
    skipped = [t for t in study.trials if t.state == STATE.PRUNED]
    assert skipped
    assert all(t.user_attrs["pruned_reason"].startswith("over budget") for t in skipped)


def _flaky_space(trial, spec):
    if trial.number % 2 == 0:
        raise RuntimeError("odd width")
    return tiny_space(trial, spec)


@pytest.mark.parametrize(
    ("space", "reason"),
    [
        (_flaky_space, "RuntimeError: odd width"),
        (
            lambda trial, spec: (
                "not a module" if trial.number % 2 == 0 else tiny_space(trial, spec)
            ),
            "TypeError: The space must return a torch.nn.Module, but returned str",
        ),
        (
            lambda trial, spec: (
                nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
                if trial.number % 2 == 0
                else tiny_space(trial, spec)
            ),
            "ValueError: The network's output for one sample has shape (1, 3), "
            "but 10 classes need (1, 10)",
        ),
        (
            lambda trial, spec: (
                nn.Sequential(nn.Flatten(), nn.Linear(32, 10))
                if trial.number % 2 == 0
                else tiny_space(trial, spec)
            ),
            "ValueError: The network failed on an input of shape (1, 1, 8, 8) (one sample of "
            "shape (1, 8, 8)): mat1 and mat2 shapes cannot be multiplied (1x64 and 32x10)",
        ),
    ],
)
def test_a_failing_trial_fails_alone_with_its_reason(space, reason):
    study = optnas.search(space, "digits", n_trials=4, epochs=1, storage=MEMORY, dedup=False)
    states = [t.state for t in study.trials]
    assert states == [STATE.FAIL, STATE.COMPLETE, STATE.FAIL, STATE.COMPLETE]
    assert study.trials[0].user_attrs["fail_reason"].startswith(reason)
    assert study.trials[0].user_attrs["epochs_trained"] == 0  # failed before training


def test_a_trial_failing_with_a_huge_message_fails_alone_on_every_storage(sql_storage):
    # An error whose message holds, say, a tensor's repr: MySQL keeps 64 KB of a user attr,
    # and recording the reason failed in turn.
    def space(trial, spec):
        if trial.number == 0:
            raise ValueError("bad shapes: " + "0.1234, " * 20_000)
        return tiny_space(trial, spec)

    study = optnas.search(space, "digits", n_trials=2, epochs=1, storage=sql_storage,
                          study_name="huge", dedup=False)  # fmt: skip
    failed, done = study.trials
    assert (failed.state, done.state) == (STATE.FAIL, STATE.COMPLETE)
    reason = failed.user_attrs["fail_reason"]
    assert reason.startswith("ValueError: bad shapes: 0.1234, ") and len(reason) < 2100
    assert reason.endswith("(158,024 characters cut; fail_traceback holds the end)")


def test_diverging_child_fails_with_the_reason():
    def exploding(trial, spec):
        trial.suggest_int("x", 0, 1)
        return Explodes()

    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(optnas.SearchError, match="only trial failed. Trial 0 failed with Div"):
        optnas.search(exploding, "digits", n_trials=1, epochs=1, storage=storage, study_name="s")
    trial = optuna.load_study(study_name="s", storage=storage).trials[0]
    assert trial.user_attrs["fail_reason"].startswith("DivergedError: training loss")


def test_a_search_whose_every_trial_failed_says_so():
    def broken(trial, spec):
        trial.suggest_int("x", 0, 9)
        raise ImportError("no module named 'mymodels'")

    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(optnas.SearchError, match="All 2 trials of this search failed. Trial 0"):
        optnas.search(broken, "digits", n_trials=2, storage=storage, study_name="s")
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.state for t in study.trials] == [STATE.FAIL] * 2  # recorded all the same


def test_a_sampler_that_stops_the_study_ends_the_search(caplog):
    grid = optuna.samplers.GridSampler({"n_layers": [1], "width0": [32, 64]})
    study = optnas.search(my_mlp, "wine", n_trials=5, epochs=1, sampler=grid, storage=MEMORY)
    assert [t.state for t in study.trials] == [STATE.COMPLETE] * 2  # the grid, once
    assert "exhausted" not in caplog.text


def my_mlp(trial: optuna.Trial, spec) -> nn.Module:
    width = trial.suggest_categorical("width0", [32, 64])
    layers = [nn.Linear(spec.input_shape[0], width), nn.ReLU()]
    for _ in range(trial.suggest_int("n_layers", 1, 2) - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, spec.num_classes))


def test_all_failing_first_trials_stop_with_one_clear_error():
    def broken(trial, spec):
        trial.suggest_int("x", 0, 9)
        raise ImportError("no module named 'mymodels'")

    with pytest.raises(optnas.SearchError) as error:
        optnas.search(broken, "digits", n_trials=50, storage=MEMORY, max_initial_failures=3)
    assert "The first 3 trials all failed" in str(error.value)
    assert "ImportError: no module named 'mymodels'" in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"objectives": ("accuracy", "energy")},
            "Unknown objective 'energy'; valid names: accuracy, params, flops, macs, latency",
        ),
        ({"sampler": "cmaes"}, "Unknown sampler 'cmaes'; valid names: auto, tpe, gp, nsga2"),
        (
            {"pruner": "patient"},
            "Unknown pruner 'patient'; valid names: auto, median, hyperband, sha, pareto",
        ),
        ({"space": "resnet"}, "Unknown space 'resnet'; valid names: auto, convnet, nb201, mlp"),
        ({"budgets": {"energy": 3}}, "Unknown budget 'energy'; valid names: params, flops"),
        ({"budgets": {"params": -1}}, "Budget 'params' must be a positive number"),
        ({"n_trials": 0}, "n_trials must be positive"),
        ({"precise_bn": -1}, "precise_bn must be a whole number >= 0, but got -1"),
        ({"devices": "tpu"}, "Unknown device 'tpu'"),
        ({"objectives": ("accuracy", "accuracy")}, "Each objective may appear once"),
        ({"data": "cifar"}, "Unknown dataset 'cifar'"),
        ({"n_trials": "5"}, "n_trials must be a number, but got '5'"),
        ({"lr": "0.01"}, "lr must be a number, but got '0.01'"),
        ({"objectives": None}, "objectives must be a name or a list of names among accuracy"),
        ({"storage": 123}, "storage must be a database URL, an Optuna storage or None"),
        ({"study_name": ""}, "study_name must be a non-empty string or None, but got ''"),
        ({"seed": -1}, "seed must be a whole number from 0 to 2\\*\\*32 - 1, but got -1"),
        ({"split_seed": "a"}, "split_seed must be a whole number from 0"),
        ({"data_dir": 123}, "data_dir must be a folder"),
    ],
)
def test_bad_names_fail_before_anything_is_created(in_tmp, kwargs, message):
    kwargs = {"space": tiny_space, "n_trials": 1, **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        optnas.search(**kwargs)
    assert not (in_tmp / "studies").exists()


def test_an_artifacts_folder_inside_a_file_is_refused_before_the_study(in_tmp):
    (in_tmp / "notes.txt").write_text("a file")
    with pytest.raises(ValueError, match="'notes.txt' is a file, so 'notes.txt/sub' cannot be"):
        optnas.search(tiny_space, n_trials=1, artifacts="notes.txt/sub")
    assert not (in_tmp / "studies").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_asked_for_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        optnas.search(tiny_space, devices="cuda", storage=MEMORY)


def test_missing_directory_storage_is_refused_and_nothing_created(tmp_path):
    url = f"sqlite:///{tmp_path}/nowhere/x.db"
    with pytest.raises(optnas.StorageError, match="directory .*nowhere does not exist"):
        optnas.search(tiny_space, n_trials=1, storage=url)
    assert not (tmp_path / "nowhere").exists()


def test_unreadable_storage_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n")
    with pytest.raises(optnas.StorageError, match="not a readable SQLite database"):
        optnas.search(tiny_space, n_trials=1, storage=f"sqlite:///{path}")
    assert path.read_text() == "these are my notes, not a database\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:secret@127.0.0.1:1/nas",  # nothing listens on port 1
        "postgresql+nosuchdriver://user:secret@127.0.0.1:1/nas",
        "nosuchdb://user:secret@127.0.0.1:1/nas",
    ],
)
def test_unreachable_database_or_wrong_url_fails_fast_naming_url_without_password(url):
    start = time.perf_counter()
    with pytest.raises(optnas.StorageError) as error:
        optnas.search(tiny_space, n_trials=1, storage=url)
    assert time.perf_counter() - start < 15
    assert "user:***@127.0.0.1:1/nas" in str(error.value) and "secret" not in str(error.value)


def test_a_locked_sqlite_file_is_reported_and_left_alone(tmp_path):
    url = f"sqlite:///{tmp_path}/locked.db"
    optnas.search(tiny_space, n_trials=1, epochs=1, storage=url, study_name="s")
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, say, or a stuck one
    try:
        with pytest.raises(optnas.StorageError, match="locked"):
            optnas.search(tiny_space, n_trials=1, epochs=1, storage=url, study_name="s")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 1


class _Untouchable:
    def __getattr__(self, name):
        raise AssertionError("the search read the test split")

    def __iter__(self):
        raise AssertionError("the search read the test split")


def test_search_never_reads_the_test_split():
    ds = load("digits")
    guarded = Dataset(ds.name, ds.spec, ds.train, ds.val, (_Untouchable(), _Untouchable()))
    study = optnas.search(tiny_space, guarded, n_trials=2, epochs=1, storage=MEMORY, dedup=False)
    assert all(t.state == STATE.COMPLETE for t in study.trials)


def test_optuna_objects_are_accepted_as_they_are(tmp_path):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(Path(tmp_path) / "journal.log"))
    )
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optnas.search(
        tiny_space,
        "digits",
        n_trials=2,
        epochs=1,
        storage=storage,
        sampler=sampler,
        pruner=optuna.pruners.NopPruner(),
        study_name="j",
    )
    assert study.sampler is sampler and len(study.trials) == 2
    assert len(optuna.load_study(study_name="j", storage=storage).trials) == 2


def test_one_objective_may_be_a_string_and_names_the_default_study():
    study = optnas.search(tiny_space, "digits", "accuracy", n_trials=1, epochs=1, storage=MEMORY)
    assert study.study_name == "tiny_space-digits-accuracy"
    assert study.metric_names == ["accuracy"]


@pytest.mark.parametrize("name", ["auto", "evolution", "controller"])
def test_optnas_samplers_run_a_search_by_name(name):
    cell_space = optnas.spaces.NB201(channels=4, cells=1)  # a flat space, small to train
    study = optnas.search(cell_space, "digits", n_trials=2, epochs=1, sampler=name, seed=0,
                          storage=MEMORY)  # fmt: skip
    assert (
        type(study.sampler).__name__
        == {
            "auto": "CostAwareSampler",
            "evolution": "RegularizedEvolutionSampler",
            "controller": "ControllerSampler",
        }[name]
    )
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trained) == 2 and all(len(t.params) == 6 for t in trained)


def test_multi_objective_default_counts_candidate_costs_on_the_built_network():
    # The default sampler models this flat space after 10 trials and counts the exact
    # parameters of its best candidates, building them inside the trial's own build.
    result = {}

    def run():
        result["study"] = optnas.search(
            {"name": "nb201", "channels": 2, "cells": 1}, "digits", ("accuracy", "params"),
            n_trials=13, epochs=1, seed=0, storage=MEMORY, pruner="none",
        )  # fmt: skip

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive(), "the search hung"
    study = result["study"]
    done = [t for t in study.trials if t.state == STATE.COMPLETE]
    assert len(done) == 13
    assert all(t.values[1] == t.user_attrs["params"] for t in done)


def test_a_budget_no_network_meets_stops_saying_by_how_much(caplog):
    logger = logging.getLogger("optnas")
    logger.addHandler(caplog.handler)
    try:
        study = optnas.search("mlp", "wine", n_trials=2, epochs=1, storage=MEMORY,
                              budgets={"params": 100}, sampler="random", seed=0)  # fmt: skip
    finally:
        logger.removeHandler(caplog.handler)
    assert len(study.trials) == 50 and not any(
        t.user_attrs["epochs_trained"] for t in study.trials
    )
    least = min(t.user_attrs["params"] for t in study.trials) - 100
    assert f"exceeded the budgets: params by {least:,}." in caplog.text


def test_without_accuracy_candidates_are_measured_not_trained(capsys):
    study = optnas.search("mlp", "wine", ("params", "latency"), n_trials=3, storage=MEMORY,
                          sampler="random", seed=0, show_progress_bar=True)  # fmt: skip
    bar = capsys.readouterr().err
    assert "3/3" in bar and "measured" in bar and "trained" not in bar
    assert [t.state for t in study.trials] == [STATE.COMPLETE] * 3
    for t in study.trials:
        assert t.values == [t.user_attrs["params"], t.user_attrs["latency"]]
        assert t.user_attrs["epochs_trained"] == 0 and "val_curve" not in t.user_attrs


def test_a_seeded_study_resumed_proposes_new_candidates_reproducibly(tmp_path):
    def twice(url: str) -> list[dict]:
        for _ in range(2):
            study = optnas.search("mlp", "wine", n_trials=3, epochs=1, storage=url,
                                  sampler="random", seed=0, study_name="s")  # fmt: skip
        return study.trials

    trials = twice(f"sqlite:///{tmp_path}/a.db")
    assert [t.state for t in trials] == [STATE.COMPLETE] * 6  # no replayed duplicates
    assert [t.params for t in twice(f"sqlite:///{tmp_path}/b.db")] == [t.params for t in trials]


def test_a_study_recorded_before_names_carried_hashes_resumes(tmp_path):
    from optnas.definition import DEFINITION_ATTR, Definition

    x, y = np.random.default_rng(0).normal(size=(60, 4)).astype("float32"), np.arange(60) % 2

    def my_mlp_space(trial, spec):
        return my_mlp(trial, spec)

    kwargs = {"n_trials": 1, "epochs": 1, "storage": f"sqlite:///{tmp_path}/a.db",
              "study_name": "s", "dedup": False}  # fmt: skip
    study = optnas.search(my_mlp_space, (x, y), **kwargs)
    hashed = Definition.from_study(study)
    unhashed_space = hashed["space"]["name"].rsplit(" ", 1)[0] + ">"  # "<module.name>"
    legacy = hashed.replace({"data.name": "<arrays>", "space.name": unhashed_space})
    study.set_user_attr(DEFINITION_ATTR, legacy.to_json())  # as older versions recorded it
    study = optnas.search(my_mlp_space, (x, y), **kwargs)
    assert len(study.trials) == 2
    assert Definition.from_study(study) == hashed  # recorded with the hashes now


def test_the_digits_read_as_a_dataset_keep_the_hash_earlier_versions_recorded():
    # A study searched on data=load("digits") resumes only while its splits hash the same.
    from optnas.definition import data_name

    assert data_name(optnas.data.load("digits")) == "<dataset digits d39e42e118>"


def test_an_architecture_in_training_is_not_trained_again_at_the_same_time():
    from conftest import Slow

    def one_network(trial, spec):
        trial.suggest_categorical("width", [8])  # every candidate is the same network
        return Slow(spec)

    study = optnas.search(one_network, "wine", n_trials=2, epochs=3, storage=MEMORY,
                          trials_per_device=2, pruner="none", artifacts=False)  # fmt: skip
    (trained,) = [t for t in study.trials if t.user_attrs.get("train_seconds")]
    # The other of the two first trials, started beside it, waited for its result.
    waited = study.trials[1 - trained.number]
    assert waited.user_attrs["duplicate_of"] == trained.number
    assert waited.datetime_complete >= trained.datetime_complete
    assert len(study.trials) == 1 + 50  # then 50 duplicates in a row: exhausted


def test_a_queued_trial_carrying_a_recipe_trains_rather_than_wait_for_itself(tmp_path):
    url = f"sqlite:///{tmp_path}/q.db"
    kwargs = {"n_trials": 1, "epochs": 1, "storage": url, "study_name": "q"}
    first = optnas.search(tiny_space, "digits", **kwargs).trials[0]
    study = optuna.load_study(study_name="q", storage=url)
    other = {"width": 12 - first.params["width"]}  # tiny_space's other network
    # As a retry by Optuna's RetryFailedTrialCallback would carry the failed run's attrs.
    study.enqueue_trial(other, user_attrs={"training": first.user_attrs["training"]})
    trials = optnas.search(tiny_space, "digits", **kwargs).trials
    assert trials[1].params == other and trials[1].state == STATE.COMPLETE
    assert trials[1].user_attrs["train_seconds"] > 0
