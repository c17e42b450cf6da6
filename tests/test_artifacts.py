from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from conftest import tiny_space
from optuna.artifacts import get_all_artifact_meta

import optnas
import optnas.workers
from optnas import artifacts
from optnas.train import evaluate


def _files(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> set[str]:
    return {m.filename for m in get_all_artifact_meta(trial, storage=study._storage)}


def test_default_store_lies_beside_the_sqlite_file_and_holds_every_diagram(in_tmp):
    study = optnas.search(tiny_space, "digits", n_trials=3, epochs=2, seed=0, dedup=False)
    folder = in_tmp / "studies" / "tiny_space-digits-accuracy.artifacts"
    assert folder.is_dir()
    assert study.user_attrs[artifacts.FOLDER_ATTR] == str(folder.resolve())
    store = artifacts.open_store(study)
    for trial in study.trials:
        meta = artifacts.find(study, trial, artifacts.DIAGRAM)
        assert meta is not None and meta.mimetype == "image/svg+xml"
        image = artifacts.read(store, meta).decode()
        assert image.startswith("<svg") and "Conv2d" in image
        assert trial.user_attrs["epochs_trained"] == 2
        weights = artifacts.find(study, trial, artifacts.WEIGHTS)  # kept for the best 5
        assert weights.mimetype == "application/octet-stream"  # not a guess from ".pt"


def test_weights_are_kept_for_the_k_best_when_each_trial_ends(tmp_path):
    study = optnas.search(
        tiny_space,
        "digits",
        n_trials=5,
        epochs=1,
        seed=1,
        dedup=False,
        keep_weights=1,
        storage=f"sqlite:///{tmp_path}/k.db",
    )
    best_so_far = -1.0
    for trial in study.trials:
        # With k=1 and one objective: kept exactly when better than every earlier trial.
        assert ("weights.pt" in _files(study, trial)) == (trial.value > best_so_far)
        best_so_far = max(best_so_far, trial.value)
    assert (tmp_path / "k.artifacts").is_dir()


def test_a_journal_storage_makes_no_folder_named_after_its_url(in_tmp):
    study = optnas.search(tiny_space, "digits", n_trials=1, epochs=1, storage="journal:j.log")
    assert sorted(p.name for p in in_tmp.iterdir()) == ["j.log"]  # and no "journal:j.artifacts"
    assert artifacts.FOLDER_ATTR not in study.user_attrs  # none by default, as for PostgreSQL


def test_no_weights_or_diagrams_when_turned_off(tmp_path):
    storage = f"sqlite:///{tmp_path}/off.db"
    study = optnas.search(tiny_space, "digits", n_trials=2, epochs=1, storage=storage,
                          dedup=False, keep_weights=0)  # fmt: skip
    assert all(_files(study, t) == {"architecture.svg"} for t in study.trials)
    study = optnas.search(tiny_space, "digits", n_trials=1, epochs=1, storage=storage,
                          study_name="none", artifacts=False)  # fmt: skip
    assert _files(study, study.trials[0]) == set()
    assert artifacts.FOLDER_ATTR not in study.user_attrs


def test_weights_trained_in_a_worker_process_come_back_whole(tmp_path):
    study = optnas.search(
        tiny_space,
        "digits",
        n_trials=2,
        epochs=2,
        seed=0,
        dedup=False,
        trials_per_device=2,  # two worker processes train the children
        storage=f"sqlite:///{tmp_path}/pool.db",
        artifacts=tmp_path / "elsewhere",
    )
    assert Path(study.user_attrs[artifacts.FOLDER_ATTR]) == (tmp_path / "elsewhere").resolve()
    val = optnas.data.load("digits").val
    for trial in study.trials:
        model = optnas.load_model(study, trial.number, space=tiny_space)
        # The kept weights score on validation what the trial recorded.
        assert evaluate(model, val) == pytest.approx(trial.user_attrs["val_curve"][-1])


def test_bad_artifacts_and_keep_weights_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="keep_weights must be a whole number"):
        optnas.search(tiny_space, "digits", keep_weights=-1, storage="sqlite:///:memory:")
    with pytest.raises(ValueError, match="artifacts must be a folder"):
        optnas.search(tiny_space, "digits", artifacts=42, storage="sqlite:///:memory:")


def test_an_artifact_store_object_is_used_as_given(tmp_path):
    store = optuna.artifacts.FileSystemArtifactStore(tmp_path)
    study = optnas.search(tiny_space, "digits", n_trials=1, epochs=1, artifacts=store,
                          storage="sqlite:///:memory:")  # fmt: skip
    meta = artifacts.find(study, study.trials[0], artifacts.WEIGHTS)
    state = torch.load(tmp_path / meta.artifact_id, weights_only=True)
    assert set(state) == {"0.weight", "0.bias", "3.weight", "3.bias"}


def test_a_relative_artifacts_folder_is_the_same_for_a_worker_started_elsewhere(
    in_tmp, monkeypatch
):
    url = f"journal:{in_tmp}/w.log"
    optnas.search("mlp", "wine", n_trials=1, epochs=1, storage=url, study_name="w",
                  artifacts="arts")  # fmt: skip
    (in_tmp / "elsewhere").mkdir()
    monkeypatch.chdir(in_tmp / "elsewhere")
    study = optnas.workers.work(url, "w", n_trials=1)
    assert study.user_attrs[artifacts.FOLDER_ATTR] == str(in_tmp / "arts")
    assert not (in_tmp / "elsewhere" / "arts").exists()
    store = artifacts.open_store(study)
    for trial in study.trials:
        assert artifacts.read(store, artifacts.find(study, trial, artifacts.DIAGRAM))


def test_an_artifact_missing_from_its_store_is_named_in_a_clear_error(tmp_path):
    storage = f"sqlite:///{tmp_path}/m.db"
    study = optnas.search(tiny_space, "digits", n_trials=1, epochs=1, storage=storage)
    for kept in (tmp_path / "m.artifacts").iterdir():
        kept.unlink()
    missing = r"weights.pt \(artifact .*\) is recorded with the study but missing from its "
    with pytest.raises(FileNotFoundError, match=missing + "artifact store in .*m.artifacts"):
        optnas.load_model(study, 0)
