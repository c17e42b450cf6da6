from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
import torch
from conftest import enqueued_study, tiny_space

import optnas
from optnas.data import DataSpec
from optnas.export import export, load_model
from optnas.spaces import SPACES
from optnas.train import evaluate

# ONNX Runtime and PyTorch sum in different orders: logits agree to float32 rounding.
ONNX_ATOL = 1e-4


def _with_weights(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    kept = [t for t in study.trials if optnas.artifacts.find(study, t, "weights.pt")]
    assert kept
    return kept


def test_load_model_round_trips_the_trained_network(finished_study):
    study, _, _ = finished_study
    val = optnas.data.load("digits").val
    for trial in _with_weights(study):
        model = load_model(study, trial.number)
        assert not model.training
        assert evaluate(model, val) == pytest.approx(trial.user_attrs["val_curve"][-1])


def test_export_writes_files_that_all_compute_the_same_outputs(finished_study, tmp_path):
    import onnxruntime

    study, _, _ = finished_study
    trial = _with_weights(study)[0]
    files = export(study, trial.number, tmp_path / "out")
    assert {p.name for p in files.values()} == {
        "architecture.json", "weights.pt", "model.onnx", "model.torchscript.pt"
    }  # fmt: skip
    original = load_model(study, trial.number)  # takes inputs standardized, as searched
    digits = optnas.data.load("digits")
    x = digits.test[0][:37]  # a batch size the export never saw
    expected = original(x).detach().numpy()
    # ONNX and TorchScript take the pixels as read (0..16) and standardize them.
    std, mean = (torch.tensor(v).view(1, -1, 1, 1) for v in (digits.std, digits.mean))
    raw = x * std + mean
    assert -1e-3 < float(raw.min()) and float(raw.max()) < 16.001  # noqa: SIM300

    # The JSON and the state dict are enough to rebuild the network.
    record = json.loads(files["json"].read_text())
    assert record["params"] == trial.params and record["arch"] == trial.user_attrs["arch"]
    assert record["classes"] == list(range(10)) and record["state"] == "COMPLETE"
    assert record["inputs"]["mean"] == pytest.approx(digits.mean)
    assert record["weights"].startswith("kept by the search")
    spec = DataSpec(tuple(record["input_shape"]), record["num_classes"])
    rebuilt = SPACES[record["space"]](optuna.trial.FixedTrial(record["params"]), spec)
    rebuilt.load_state_dict(torch.load(files["weights"], weights_only=True))
    assert np.array_equal(rebuilt.eval()(x).detach().numpy(), expected)

    session = onnxruntime.InferenceSession(str(files["onnx"]))
    (logits,) = session.run(None, {"input": raw.numpy()})
    np.testing.assert_allclose(logits, expected, atol=ONNX_ATOL, rtol=0)
    assert (logits.argmax(1) == expected.argmax(1)).all()

    with pytest.warns(FutureWarning):  # TorchScript is deprecated, and still loads
        scripted = torch.jit.load(str(files["torchscript"]))
    np.testing.assert_allclose(scripted(raw).detach().numpy(), expected, atol=ONNX_ATOL, rtol=0)


def test_a_trial_without_weights_says_how_to_get_them(finished_study, tmp_path):
    study, _, _ = finished_study
    bare = [t for t in study.trials if not optnas.artifacts.find(study, t, "weights.pt")]
    if not bare:
        pytest.skip("every trial of this study kept its weights")
    with pytest.raises(FileNotFoundError, match="optnas retrain --trial"):
        load_model(study, bare[0].number)
    # The architecture alone needs no weights.
    files = export(study, bare[0].number, tmp_path, formats=["json"])
    assert json.loads(files["json"].read_text())["trial"] == bare[0].number


def test_unknown_trials_formats_and_stores_are_clear_errors(finished_study, tmp_path):
    study, _, _ = finished_study
    with pytest.raises(ValueError, match="has no trial 99; its trial numbers: 0..2"):
        load_model(study, 99)
    with pytest.raises(ValueError, match="Unknown format"):
        export(study, 0, tmp_path, formats=["pickle"])
    trial = _with_weights(study)[0]
    with pytest.raises(FileNotFoundError, match="No artifact store"):
        load_model(study, trial.number, artifacts=tmp_path / "missing")


def test_onnx_export_without_its_package_writes_nothing(finished_study, tmp_path, monkeypatch):
    # After a plain `pip install -e .`, two of the four files were written before it failed.
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "onnxscript" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    study, _, _ = finished_study
    out = tmp_path / "out"
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'optnas\[export\]'"):
        export(study, _with_weights(study)[0].number, out)
    assert not out.exists()


def test_a_space_of_ones_own_rebuilds_by_import_path_or_when_passed(tmp_path):
    study = optnas.search(tiny_space, "digits", n_trials=1, epochs=1,
                          storage=f"sqlite:///{tmp_path}/own.db")  # fmt: skip
    # A module-level function is recorded by its import path: nothing to pass.
    assert load_model(study, 0)(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    record = json.loads(export(study, 0, tmp_path, formats=["json"])["json"].read_text())
    assert record["space"] == "conftest:tiny_space"

    def local_space(trial, spec):  # no import path reaches it
        return tiny_space(trial, spec)

    study = optnas.search(local_space, "digits", n_trials=1, epochs=1, study_name="local",
                          storage=f"sqlite:///{tmp_path}/own.db")  # fmt: skip
    with pytest.raises(ValueError, match="pass space="):
        load_model(study, 0)
    assert load_model(study, 0, space=local_space)(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def _fails_for_width_4(trial, spec):
    if trial.suggest_categorical("width", [4, 8]) == 4:
        raise RuntimeError("no width 4 here")
    return tiny_space(trial, spec)


def test_failed_and_duplicate_trials_say_why_they_do_not_export(tmp_path):
    # A failure counts as one of n_trials: 8 trains, its copy is pruned untrained, 4 fails.
    url = enqueued_study(tmp_path, "d", [{"width": 8}, {"width": 8}, {"width": 4}])
    study = optnas.search(_fails_for_width_4, "digits", ("accuracy",), n_trials=2, epochs=1,
                          storage=url, study_name="d")  # fmt: skip
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "FAIL"]
    with pytest.raises(ValueError, match=r"Trial 2 \(FAIL\) cannot be rebuilt: its space "
                       r"raised RuntimeError: no width 4 here; in the search it failed with "
                       r"RuntimeError: no width 4 here"):  # fmt: skip
        load_model(study, 2, space=_fails_for_width_4)
    with pytest.raises(FileNotFoundError, match=r"duplicate of trial 0, .*use trial 0"):
        load_model(study, 1, space=_fails_for_width_4)
    assert load_model(study, 0, space=_fails_for_width_4) is not None


def test_wide_data_s_standardization_is_kept_on_every_storage(tmp_path, sql_storage):
    # 3,000 features: their means and deviations as JSON exceed the 64 KB MySQL keeps of
    # one user attr, which failed the search before it trained anything.
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(240, 3000)) * 3.3 + 1.7).astype(np.float32)
    y = np.arange(240) % 3
    kwargs = {"n_trials": 1, "epochs": 1, "storage": sql_storage, "study_name": "wide",
              "artifacts": str(tmp_path / "a")}  # fmt: skip
    study = optnas.search("mlp", (x, y), "accuracy", **kwargs)
    record = json.loads(export(study, 0, tmp_path, formats=["json"])["json"].read_text())
    mean, std = np.array(record["inputs"]["mean"]), np.array(record["inputs"]["std"])
    assert mean.shape == std.shape == (3000,)
    assert abs(mean.mean() - 1.7) < 0.1 and abs(std.mean() - 3.3) < 0.2
    assert record["classes"] == [0, 1, 2]
    # A rerun on the same data resumes, reading the standardization back from its parts.
    assert len(optnas.search("mlp", (x, y), "accuracy", **kwargs).trials) == 2
