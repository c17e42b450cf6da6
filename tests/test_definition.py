"""Study files and the definitions recorded with studies (optnas.definition)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

import optnas
from optnas.cli import main
from optnas.definition import DEFAULT_FILE, DEFINITION_ATTR, Definition, DefinitionError, load
from optnas.search import open_study

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "studies").glob("*.toml"))
QUICK = {"n_trials": 2, "train.epochs": 1}


def test_every_shipped_file_loads_with_a_comment_saying_what_it_is_for():
    assert len(SHIPPED) >= 4
    for path in [*SHIPPED, DEFAULT_FILE]:
        definition = load(path)
        assert definition["objectives"] and definition["space"]["name"]
        assert path.read_text().startswith("# "), path


def test_the_default_file_and_studies_digits_are_the_same_definition():
    assert load(ROOT / "studies" / "digits.toml") == load(DEFAULT_FILE)


@pytest.mark.parametrize("name", ["digits.toml", "mlp-tabular.toml"])
def test_small_shipped_files_run_a_few_trials(name, in_tmp):
    study = load(ROOT / "studies" / name).replace(QUICK).search()
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) >= 1
    assert Path("studies", f"{study.study_name}.db").exists()


def test_file_and_no_file_give_the_same_recorded_definition(in_tmp, capsys):
    quick = ["--n-trials", "1", "--epochs", "1"]
    assert main(["search", *quick]) == 0
    # The same study name: a different definition would be refused here.
    assert main(["search", str(ROOT / "studies" / "digits.toml"), *quick]) == 0
    study = open_study("convnet-digits-accuracy-params-flops", None)
    recorded = Definition.from_study(study)
    assert recorded["space"] == {"name": "convnet"}  # "auto" recorded as what it chose
    assert recorded["train"]["epochs"] == 1 and len(study.trials) >= 2


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


GOOD = 'objectives = ["accuracy"]\nspace = "mlp"\ndata = "wine"\n'


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        (GOOD + "n_trial = 3\n", "n_trial", "unknown key"),
        (GOOD + "[train]\nepoch = 3\n", "train.epoch", "unknown key"),
        (GOOD + "[train]\nepochs = 'ten'\n", "train.epochs", "expected a whole number"),
        (GOOD + "dedup = 1\n", "dedup", "expected true or false"),
        (GOOD + "[budgets]\nparams = -5\n", "budgets.params", "a positive number"),
        ('space = "mlp"\ndata = "wine"\n', "objectives", "missing key"),
        ('objectives = ["accuracy"]\ndata = "wine"\n', "space", "missing key"),
        ('objectives = ["accuracy"]\nspace = "mlp"\n', "data", "missing key"),
        (
            'objectives = ["accuracy"]\ndata = "wine"\n[space]\nwidths = [1]\n',
            "space.name",
            "missing key",
        ),  # fmt: skip
        (GOOD.replace('"mlp"', '"resnet"'), "space.name", "unknown space 'resnet'"),
        (GOOD.replace('"mlp"', '"no_such_pkg.spaces:fn"'), "space.name", "Cannot import"),
        (GOOD.replace('"mlp"', '"optnas.spaces:nothing"'), "space.name", "has no attribute"),
        (
            GOOD.replace('space = "mlp"\n', "") + '[space]\nname = "mlp"\nmax_layer = 2\n',
            "space.max_layer",
            "Unknown option 'max_layer'",
        ),  # fmt: skip
        (GOOD + '[sampler]\nname = "tpe"\nstartup = 3\n', "sampler.startup", "Unknown option"),
        (GOOD + 'pruner = "sometimes"\n', "pruner.name", "unknown pruner"),
        (GOOD + 'objectives = ["speed"]\n', "line 4", "not valid TOML"),  # a repeated key
        (GOOD.replace('"accuracy"', '"speed"'), "objectives", "expected a list of distinct"),
        (
            GOOD.replace('data = "wine"', '[data]\nname = "wine"\nimage_size = 32'),
            "data.image_size",
            "resizes the images of an image folder",
        ),  # fmt: skip
    ],
)
def test_malformed_files_name_the_file_and_the_key(tmp_path, text, key, says):
    path = _write(tmp_path, text)
    with pytest.raises(DefinitionError) as error:
        load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert (key if key.startswith("line") else f"'{key}'") in message, message
    assert says in message, message


def test_the_cli_reports_a_malformed_file_in_one_line_before_training(tmp_path, capsys):
    path = _write(tmp_path, GOOD + "[train]\nepochs = 0\n")
    assert main(["search", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "'train.epochs'" in err


def test_flags_override_the_file(in_tmp, capsys):
    path = ROOT / "studies" / "mlp-tabular.toml"
    storage = f"sqlite:///{in_tmp}/t.db"
    argv = ["search", str(path), "--epochs", "1", "--n-trials", "2", "--storage", storage,
            "--budget", "params=5000", "--sampler", "random"]  # fmt: skip
    assert main(argv) == 0
    study = optuna.load_study(study_name="mlp-breast_cancer-accuracy-params", storage=storage)
    recorded = Definition.from_study(study)
    assert recorded["train"]["epochs"] == 1 and recorded["train"]["lr"] == 0.003
    assert recorded["budgets"] == {"params": 5000.0} and recorded["sampler"] == {"name": "random"}
    assert recorded["space"] == {"name": "mlp", "max_layers": 3}


def test_flags_switch_off_what_the_file_switches_on(in_tmp):
    text = GOOD.replace('data = "wine"\n', "") + 'dedup = false\nartifacts = "kept"\n'
    text += '[data]\nname = "wine"\ndownload = true\n[train]\nautotune = true\n'
    path = _write(in_tmp, text)
    argv = ["search", str(path), "--epochs", "1", "--n-trials", "1", "--storage",
            "sqlite:///t.db", "--dedup", "--no-artifacts", "--no-autotune",
            "--no-download"]  # fmt: skip
    assert main(argv) == 0
    study = optuna.load_study(study_name="mlp-wine-accuracy", storage="sqlite:///t.db")
    recorded = Definition.from_study(study)
    assert recorded["dedup"] is True and recorded["train"]["autotune"] is False
    assert recorded["artifacts"] is False and not (in_tmp / "kept").exists()
    assert recorded["data"]["download"] is False


def _as_recorded_before_precise_bn(url: str, source: str, name: str) -> optuna.Study:
    """A copy of study ``source`` as optnas recorded it before ``precise_bn`` existed."""
    old = optuna.load_study(study_name=source, storage=url)
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    definition = json.loads(old.user_attrs[DEFINITION_ATTR])
    del definition["train"]["precise_bn"]
    study.set_user_attr(DEFINITION_ATTR, json.dumps(definition))
    for attr in ("optnas.spec",):
        study.set_user_attr(attr, old.user_attrs[attr])
    for trial in old.trials:
        attrs = dict(trial.user_attrs)
        attrs["training"] = {k: v for k, v in attrs["training"].items() if k != "precise_bn"}
        study.add_trial(optuna.trial.create_trial(
            params=trial.params, distributions=trial.distributions, value=trial.value,
            user_attrs=attrs))  # fmt: skip
    return study


def test_a_study_recorded_before_precise_bn_resumes_as_it_was_trained(in_tmp):
    url = f"sqlite:///{in_tmp}/old.db"
    args = {"space": "mlp", "data": "wine", "n_trials": 1, "epochs": 1, "storage": url, "seed": 0}
    first = optnas.search(**args, study_name="new")
    study = _as_recorded_before_precise_bn(url, "new", "old")
    # Its trials were scored on running averages: a worker joining it goes on so.
    assert Definition.from_study(study).search_kwargs()["precise_bn"] == 0
    with pytest.raises(optnas.StorageError, match=r"train\.precise_bn: 0 → 128"):
        optnas.search(**args, study_name="old")
    study.enqueue_trial(first.trials[0].params)
    resumed = optnas.search(**args, study_name="old", precise_bn=0)
    assert resumed.trials[1].user_attrs["duplicate_of"] == 0  # the same recipe: not retrained


def test_a_rerun_with_another_definition_is_refused_and_a_fork_continues(in_tmp):
    kwargs = {"n_trials": 1, "epochs": 1, "study_name": "s", "storage": f"sqlite:///{in_tmp}/s.db"}
    optnas.search(optnas.spaces.MLP(max_layers=1), "wine", **kwargs)
    optnas.search(optnas.spaces.MLP(max_layers=1), "wine", **kwargs | {"n_trials": 2})
    show = f"`optnas show --storage {kwargs['storage']} --study-name s --definition`"
    with pytest.raises(optnas.StorageError, match=rf"train\.epochs: 1 → 2.*{show}.*fork"):
        optnas.search(optnas.spaces.MLP(max_layers=1), "wine", **kwargs | {"epochs": 2})
    study = optnas.search(
        optnas.spaces.MLP(max_layers=1), "wine", **kwargs | {"epochs": 2}, fork="s-2"
    )
    assert study.study_name == "s-2"
    assert study._storage.get_heartbeat_interval() == 60  # the URL opened as a search does
    original = optuna.load_study(study_name="s", storage=kwargs["storage"])
    assert len(study.trials) > len(original.trials)
    assert Definition.from_study(study)["train"]["epochs"] == 2
    assert study.user_attrs["optnas.forked_from"] == "s"


def test_an_option_spelt_out_at_its_default_resumes_the_study(in_tmp):
    # "would change sampler.population_size: nothing → 10" refused a rerun that changed
    # nothing.
    kwargs = {"n_trials": 1, "epochs": 1, "study_name": "e", "storage": f"sqlite:///{in_tmp}/e.db"}
    optnas.search("mlp", "wine", sampler="evolution", pruner="median", **kwargs)
    optnas.search("mlp", "wine", sampler={"name": "evolution", "population_size": 10},
                  pruner={"name": "median", "n_warmup_steps": 1}, **kwargs)  # fmt: skip
    with pytest.raises(optnas.StorageError, match="sampler.population_size: 10 → 20"):
        optnas.search("mlp", "wine", sampler={"name": "evolution", "population_size": 20},
                      pruner="median", **kwargs)  # fmt: skip
    # An option whose value search() chooses, not the class's default (TPE's constant liar
    # is off in a lone search, though Optuna's default is on): spelt out, it is a change.
    kwargs["study_name"] = "t"
    optnas.search("mlp", "wine", sampler="tpe", **kwargs)
    with pytest.raises(optnas.StorageError, match="sampler.constant_liar: nothing → True"):
        optnas.search("mlp", "wine", sampler={"name": "tpe", "constant_liar": True}, **kwargs)


def test_a_fork_with_the_default_storage_gets_its_own_file(in_tmp):
    optnas.search("mlp", "wine", n_trials=1, epochs=1, study_name="a")
    optnas.search("mlp", "wine", n_trials=1, epochs=2, study_name="a", fork="b")
    assert Path("studies/a.db").exists() and Path("studies/b.db").exists()
    with pytest.raises(optnas.StorageError, match="Cannot fork study 'zzz'"):
        optnas.search("mlp", "wine", n_trials=1, epochs=1, study_name="zzz", fork="y")


def test_a_fork_keeps_the_diagrams_and_weights_of_the_trials_it_copied(in_tmp):
    from optnas import artifacts

    kwargs = {"n_trials": 2, "epochs": 1, "study_name": "a", "keep_weights": 2}
    optnas.search("mlp", "wine", **kwargs)
    fork = optnas.search("mlp", "wine", **kwargs | {"n_trials": 1, "epochs": 2}, fork="b")
    copied = [t for t in fork.trials[:2] if artifacts.find(fork, t, artifacts.WEIGHTS)]
    assert copied
    for t in copied:
        optnas.load_model(fork, t.number)  # the weights are read from the fork's store
        store = artifacts.open_store(fork)
        assert artifacts.read(store, artifacts.find(fork, t, artifacts.DIAGRAM))


def test_a_fork_s_recorded_definition_reruns_the_fork_not_its_source(in_tmp):
    optnas.search("mlp", "wine", n_trials=1, epochs=1)
    fork = optnas.search("mlp", "wine", n_trials=1, epochs=2, fork="wine-2")
    definition = Definition.from_study(fork)
    assert definition["study_name"] == "wine-2"
    before = len(fork.trials)
    again = definition.replace({"n_trials": 1}).search()
    assert again.study_name == "wine-2" and len(again.trials) > before


def test_any_text_round_trips_through_a_study_file():
    d = load(DEFAULT_FILE).replace({"study_name": 'nas-\U0001f680 "q" \\', "data.root": "données"})
    assert Definition.from_toml(d.to_toml()) == d


def test_a_study_rebuilds_from_its_storage_alone(in_tmp, capsys):
    storage = f"sqlite:///{in_tmp}/r.db"
    optnas.search(
        {"name": "nb201", "channels": 4, "cells": 1},
        "digits",
        sampler={"name": "tpe", "n_startup_trials": 3},
        pruner={"name": "median", "n_startup_trials": 2},
        n_trials=1,
        epochs=1,
        storage=storage,
        study_name="r",
        seed=3,
    )
    assert main(["show", "--storage", storage, "--definition"]) == 0
    text = capsys.readouterr().out
    definition = Definition.from_toml(text, source="shown")
    assert definition["space"] == {"name": "nb201", "channels": 4, "cells": 1}
    assert definition["sampler"] == {"name": "tpe", "n_startup_trials": 3}
    # Rebuilt from storage alone, the same definition resumes the same study.
    study = optuna.load_study(study_name="r", storage=storage)
    again = Definition.from_study(study).replace({"n_trials": 1}).search()
    assert len(again.trials) >= 2
    assert json.loads(again.user_attrs[DEFINITION_ATTR])["seed"] == 3


def test_functions_are_recorded_by_import_path_and_local_ones_cannot_be_rebuilt(in_tmp, capsys):
    from conftest import tiny_space

    study = optnas.search(tiny_space, "digits", n_trials=1, epochs=1, storage=None)
    assert Definition.from_study(study)["space"] == {"name": "conftest:tiny_space"}

    def local_space(trial, spec):
        return tiny_space(trial, spec)

    study = optnas.search(local_space, "digits", n_trials=1, epochs=1, study_name="local")
    definition = Definition.from_study(study)
    assert definition["space"]["name"].startswith("<")
    with pytest.raises(DefinitionError, match="cannot be rebuilt"):
        definition.search_kwargs()
    assert main(["show", "--study-name", "local", "--definition"]) == 0
    shown = capsys.readouterr().out
    assert "# It cannot be run as it is" in shown and 'name = "<' in shown


def test_a_file_can_name_a_space_by_import_path(tmp_path, in_tmp):
    path = _write(tmp_path, 'objectives = ["accuracy"]\nspace = "conftest:tiny_space"\n'
                  'data = "digits"\nn_trials = 1\n[train]\nepochs = 1\n')  # fmt: skip
    study = load(path).search()
    assert set(study.trials[0].params) == {"width"}


def test_unlimited_trials_run_until_the_space_is_exhausted_and_are_recorded_so(
    tmp_path, in_tmp, capsys
):
    text = ('objectives = ["accuracy"]\nspace = "conftest:tiny_space"\ndata = "digits"\n'
            "n_trials = 1\n[train]\nepochs = 1\n")  # fmt: skip
    path = _write(tmp_path, text)
    assert main(["search", str(path), "--n-trials", "unlimited", "--study-name", "u"]) == 0
    study = open_study("u", None)
    trained = [t for t in study.trials if t.user_attrs.get("epochs_trained")]
    assert len(trained) == 2  # tiny_space's two networks: the file's 1 was lifted
    assert not any(t.user_attrs["epochs_trained"] for t in study.trials[-50:])  # exhausted
    assert Definition.from_study(study)["n_trials"] == "unlimited"
    assert load(path).replace({"n_trials": "unlimited"}).search_kwargs()["n_trials"] is None
    with pytest.raises(DefinitionError, match="a whole number ≥ 1 or 'unlimited', got 'all'"):
        load(path).replace({"n_trials": "all"})


def test_a_refused_fork_leaves_nothing_behind(in_tmp):
    optnas.search("mlp", "wine", ("accuracy", "params"), n_trials=1, epochs=1, study_name="a")
    with pytest.raises(optnas.StorageError, match=r"its objectives are \['accuracy', 'params'\]"):
        optnas.search("mlp", "wine", ("accuracy",), n_trials=1, epochs=2, study_name="a",
                      fork="b")  # fmt: skip
    with pytest.raises(optnas.StorageError, match="sqlite:///studies/zzz.db does not exist"):
        optnas.search("mlp", "wine", n_trials=1, epochs=1, study_name="zzz", fork="c")
    assert {p.name.split(".")[0] for p in Path("studies").iterdir()} == {"a"}
    optnas.search("mlp", "wine", ("accuracy",), n_trials=1, epochs=1, study_name="other")
    with pytest.raises(optnas.StorageError, match="a study 'other' already exists"):
        optnas.search("mlp", "wine", ("accuracy", "params"), n_trials=1, epochs=2,
                      study_name="a", fork="other")  # fmt: skip
