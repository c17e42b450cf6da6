from __future__ import annotations

import re

import optuna
from optuna.trial import TrialState, create_trial

import optnas
from optnas.cli import main
from optnas.report import SECTIONS, report


def _made_up_study() -> optuna.Study:
    """Completed, pruned and over-budget trials, as optnas records them."""
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    study.set_metric_names(["accuracy", "params", "flops"])
    dist = {"width": optuna.distributions.CategoricalDistribution([8, 16, 32])}
    rows = [  # state, width, curve, params, flops
        (TrialState.COMPLETE, 8, [0.7, 0.9], 1_000, 20_000),
        (TrialState.COMPLETE, 16, [0.8, 0.95], 4_000, 80_000),
        (TrialState.COMPLETE, 32, [0.6, 0.85], 16_000, 320_000),  # dominated
        (TrialState.PRUNED, 16, [0.3], 5_000, 90_000),
        (TrialState.PRUNED, 32, [], 90_000, 9_000_000),
    ]
    for state, width, curve, params, flops in rows:
        attrs = {"arch": f"w{width}", "params": params, "flops": flops, "val_curve": curve,
                 "epochs_trained": len(curve)}  # fmt: skip
        if state == TrialState.PRUNED and not curve:
            attrs["pruned_reason"] = "over budget: params 90,000 > 50,000 (not trained)"
        values = [curve[-1], params, flops] if state == TrialState.COMPLETE else None
        study.add_trial(create_trial(state=state, values=values, params={"width": width},
                                     distributions=dist, user_attrs=attrs))  # fmt: skip
    return study


def test_report_is_one_offline_file_with_every_section(tmp_path):
    path = report(_made_up_study(), tmp_path / "r.html")
    page = path.read_text()
    assert list(tmp_path.iterdir()) == [path]
    # plotly.js is inlined once; nothing is fetched from the network.
    assert page.count("plotly.js v") >= 1 and not re.search(r"<script[^>]+src=", page)
    for key, title in SECTIONS.items():
        assert f'<section id="{key}"><h2>{title}</h2>' in page
    assert page.count('class="plotly-graph-div"') == 4


def test_report_shows_pruned_and_over_budget_trials_apart(tmp_path):
    page = report(_made_up_study(), tmp_path / "r.html").read_text()
    assert '"name":"pruned (last validation accuracy)"' in page
    assert '"name":"over budget, not trained (drawn below)"' in page
    assert '"name":"trial 3 (pruned)"' in page  # its learning curve
    table = page[page.index('<section id="pareto-trials">') :]
    assert "<td>w8</td>" in table and "<td>w16</td>" in table and "<td>w32</td>" not in table


def test_the_pareto_front_is_drawn_against_the_study_s_own_costs(tmp_path):
    # Optimal in accuracy against latency, the front was drawn against params and FLOPs,
    # where it can look dominated.
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency"])
    for acc, ms in ((0.9, 2.0), (0.8, 0.5)):
        attrs = {"arch": "a", "params": 10, "flops": 20, "latency": ms, "val_curve": [acc]}
        study.add_trial(create_trial(values=[acc, ms], user_attrs=attrs))
    page = report(study, tmp_path / "r.html").read_text()
    figure = page[page.index('<section id="pareto-front">') : page.index('id="hypervolume"')]
    assert "accuracy vs latency (ms)" in figure
    assert "accuracy vs parameters" not in figure and "accuracy vs FLOPs" not in figure


def test_report_command_on_a_searched_study(finished_study, tmp_path, capsys):
    study, storage, _ = finished_study
    out = tmp_path / "report.html"
    assert main(["report", "--storage", storage, "-o", str(out)]) == 0
    assert f"Wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    for trial in study.best_trials:
        assert f"<td>{trial.user_attrs['arch']}</td>" in page
    assert "hypervolume (share of the unit box)" in page


def test_report_of_a_study_with_budgets_draws_its_over_budget_trials(tmp_path, in_tmp):
    study = optnas.search("mlp", "wine", ("accuracy", "params"), n_trials=3, epochs=1, seed=0,
                          budgets={"params": 3_000})  # fmt: skip
    over = [t for t in study.trials if t.constraints and t.constraints["params"] > 0]
    assert over, "the budget was meant to exclude some networks"
    page = report(study, tmp_path / "r.html").read_text()
    assert '"name":"over budget, not trained (drawn below)"' in page
