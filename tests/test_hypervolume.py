from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest

from optnas.hypervolume import bounds_of, history, hypervolume

COMPLETE = optuna.trial.TrialState.COMPLETE


def _study(names, directions, rows, **extra) -> optuna.Study:
    study = optuna.create_study(directions=directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
    for row in rows:
        study.add_trial(optuna.trial.create_trial(values=row, **extra))
    return study


def test_two_objectives_match_the_hand_computed_area():
    # Losses (0.2, 0.5) and (0.4, 0.0) in the unit box: 0.4 + 0.6 - 0.3 = 0.7.
    study = _study(["accuracy", "params"], ["maximize", "minimize"], [[0.8, 100], [0.6, 10]])
    assert hypervolume(study, bounds={"params": (10, 1000)}) == pytest.approx(0.7)


def test_three_objectives_match_the_hand_computed_volume():
    # Losses (0.2, 0.5, 0.5) and (0.6, 0, 0.5): 0.2 + 0.2 - 0.1 = 0.3.
    study = _study(
        ["accuracy", "params", "latency"],
        ["maximize", "minimize", "minimize"],
        [[0.8, 100, 1.0], [0.4, 10, 1.0]],
    )
    volume = hypervolume(study, bounds={"params": (10, 1000), "latency": (0.1, 10.0)})
    assert volume == pytest.approx(0.3)


def test_infeasible_and_unfinished_trials_do_not_count():
    study = _study(["accuracy", "params"], ["maximize", "minimize"], [[0.5, 100]])
    study.add_trial(
        optuna.trial.create_trial(values=[0.99, 10], system_attrs={"constraints:params": 5.0})
    )
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    assert hypervolume(study, bounds={"params": (10, 1000)}) == pytest.approx(0.25)


def test_default_bounds_come_from_every_measured_trial():
    study = _study(["accuracy", "flops"], ["maximize", "minimize"], [[0.9, 200.0]])
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, user_attrs={"flops": 2_000.0}
        )
    )
    assert bounds_of(study) == {"flops": (200.0, 2_000.0)}
    assert hypervolume(study) == pytest.approx(0.9)  # the cheapest: no cost loss


def test_a_candidate_over_budget_does_not_stretch_the_scale():
    # Recorded as optnas records one: its costs measured, pruned untrained.
    study = _study(["accuracy", "params"], ["maximize", "minimize"], [[0.9, 1000], [0.5, 10]])
    before = hypervolume(study)
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED,
            user_attrs={"params": 2_000_000},
            system_attrs={"constraints:params": 2_000_000 - 30_000},
        )
    )
    assert bounds_of(study) == {"params": (10.0, 1000.0)}
    assert hypervolume(study) == before


def test_history_grows_with_the_front():
    rows = [[0.5, 100], [0.4, 1000], [0.9, 100], [0.95, 10]]
    study = _study(["accuracy", "params"], ["maximize", "minimize"], rows)
    points = history(study, bounds={"params": (10, 1000)})
    assert [p.trial for p in points] == [0, 1, 2, 3]
    assert [round(p.hypervolume, 4) for p in points] == [0.25, 0.25, 0.45, 0.95]
    assert all(a.seconds <= b.seconds for a, b in zip(points, points[1:], strict=False))


def test_optunas_private_hypervolume_still_computes_volumes():
    # optnas relies on optuna._hypervolume.compute_hypervolume (no public equivalent).
    from optuna._hypervolume import compute_hypervolume

    points = np.array([[0.2, 0.5], [0.4, 0.0]])
    assert compute_hypervolume(points, np.ones(2)) == pytest.approx(0.7)
