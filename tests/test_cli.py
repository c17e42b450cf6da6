from __future__ import annotations

import os
import re
import subprocess
import sys

import optuna
import pytest
from conftest import enqueued_study

from optnas.cli import main


def test_search_prints_pareto_table_and_dashboard_command(in_tmp, capsys):
    assert main(["search", "--n-trials", "3", "--epochs", "1", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    name = "convnet-digits-accuracy-params-flops"
    assert f"Study '{name}': 3 trials (3 complete, 0 pruned, 0 failed)" in out
    assert "Pareto-optimal trials:" in out
    assert "trial  accuracy" in out and "stem" in out
    assert "Hypervolume: 0." in out and "reference point 1" in out
    assert f"optnas dashboard --storage sqlite:///studies/{name}.db --study-name {name}" in out
    assert f"optuna-dashboard sqlite:///studies/{name}.db" in out
    assert (in_tmp / "studies" / f"{name}.db").is_file()


def test_a_journal_storage_is_printed_as_given(in_tmp, capsys):
    argv = ["search", "--data", "wine", "--objectives", "accuracy", "--n-trials", "1",
            "--epochs", "1", "--storage", "journal:j.log", "--study-name", "j"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "optnas dashboard --storage journal:j.log --study-name j" in out
    assert "optuna-dashboard j.log" in out  # optuna-dashboard takes the journal file itself
    assert "sqlite" not in out


def test_tabular_search_with_latency_picks_the_mlp_space(in_tmp, capsys):
    argv = ["search", "--data", "wine", "--objectives", "accuracy,latency", "--n-trials", "2"]
    assert main([*argv, "--epochs", "2", "--latency-batch-size", "16", "--no-dedup"]) == 0
    out = capsys.readouterr().out
    assert "Study 'mlp-wine-accuracy-latency': 2 trials (2 complete" in out
    assert "trial  accuracy  latency (ms)" in out
    study = optuna.load_study(
        study_name="mlp-wine-accuracy-latency",
        storage="sqlite:///studies/mlp-wine-accuracy-latency.db",
    )
    assert all(t.user_attrs["latency_batch_size"] == 16 for t in study.trials)
    assert not any("duplicate_of" in t.user_attrs for t in study.trials)


def test_precise_bn_flag_reaches_training_and_its_record(in_tmp, capsys):
    scores = {}
    for samples in ("0", "128"):
        argv = ["search", "--objectives", "accuracy", "--n-trials", "1", "--epochs", "1",
                "--seed", "0", "--study-name", samples, "--precise-bn", samples]  # fmt: skip
        assert main(argv) == 0
        url = f"sqlite:///studies/{samples}.db"
        trial = optuna.load_study(study_name=samples, storage=url).trials[0]
        assert trial.user_attrs["training"]["precise_bn"] == int(samples)
        scores[samples] = trial.value
    # The same network, initialization and batches: only the statistics it is scored on differ.
    assert scores["128"] > scores["0"] + 0.2


def test_same_study_name_twice_keeps_both_runs(in_tmp, capsys):
    for _ in range(2):
        assert (
            main(
                [
                    "search",
                    "--study-name",
                    "X",
                    "--n-trials",
                    "2",
                    "--epochs",
                    "1",
                    "--objectives",
                    "accuracy",
                ]
            )
            == 0
        )
    assert "Study 'X': 4 trials" in capsys.readouterr().out
    study = optuna.load_study(study_name="X", storage="sqlite:///studies/X.db")
    assert len(study.trials) == 4
    assert main(["show", "--study-name", "X"]) == 0
    out = capsys.readouterr().out
    assert "Study 'X': 4 trials" in out and "Best:" in out


def test_show_finds_the_only_study_of_a_storage(in_tmp, capsys):
    main(["search", "--study-name", "only", "--n-trials", "1", "--epochs", "1"])
    capsys.readouterr()
    assert main(["show", "--storage", "studies/only.db"]) == 0
    assert "Study 'only': 1 trial (" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "--sampler", "bogus"], "unknown sampler 'bogus'; valid names: auto, tpe"),
        (["search", "--budget", "energy=3"], "--budget: unknown key 'budgets.energy'"),
        (["search", "--optimizer", "adam"], "--optimizer: expected 'adamw' or 'sgd', got 'adam'"),
        (
            ["search", "--objectives", "accuracy", "--pruner", "median", "--label-smoothing", "2"],
            "--label-smoothing: expected a number in [0, 1), got 2.0",
        ),
        (["search", "--sampler", "tpee"], "--sampler: unknown sampler 'tpee'; valid names: auto"),
        (["show", "--study-name", "missing"], "sqlite:///studies/missing.db: no such file"),
        (["bench", "nb201", "--sampler", "auto,bogus"], "Unknown sampler 'bogus'"),
        (["bench", "nb201", "--table", "missing.csv"], "No NAS-Bench-201 table at missing.csv"),
    ],
)
def test_bad_values_exit_1_with_one_line(in_tmp, capsys, argv, message):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (in_tmp / "studies").exists() or argv[0] == "show"


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--n-trials", "0"],
        ["search", "--n-trials", "all"],
        ["search", "--objectives", "accuracy,speed"],
        ["search", "--epochs", "x"],
        ["search", "--budget", "10"],
        ["search", "--precise-bn", "-3"],
    ],
)
def test_invalid_flag_values_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "error: argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["search", "--trials", "3"], "usage: optnas search"),  # not --trials-per-device 3
        (["search", "--latency", "2"], "usage: optnas search"),
        (["worker", "--storage", "s", "--study", "w", "--trials", "3"], "usage: optnas worker"),
        (["show", "--bogus"], "usage: optnas show"),
    ],
)
def test_shortened_and_unknown_flags_are_refused_with_the_command_s_usage(argv, usage, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(usage)
    assert f"unrecognized arguments: {argv[-2] if argv[-1].isdigit() else argv[-1]}" in err


def test_show_without_a_name_finds_the_only_study_here_or_lists_them(in_tmp, capsys):
    # After `optnas search --data wine`, `optnas show` looked for the default study's file.
    args = ["--objectives", "accuracy", "--n-trials", "1", "--epochs", "1"]
    assert main(["search", "--data", "wine", *args]) == 0
    capsys.readouterr()
    assert main(["show"]) == 0
    assert capsys.readouterr().out.startswith("Study 'mlp-wine-accuracy': 1 trial")
    assert main(["search", "--data", "breast_cancer", *args]) == 0
    capsys.readouterr()
    assert main(["show"]) == 1
    assert "pass --study-name, one of: mlp-breast_cancer-accuracy, mlp-wine-accuracy" in (
        capsys.readouterr().err
    )


def test_console_script_help_is_fast_and_lists_commands():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from optnas.cli import main; sys.argv = ['optnas', '--help']; main()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "search" in done.stdout and "show" in done.stdout
    check = subprocess.run(
        [sys.executable, "-c", "import optnas.cli, sys; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.strip() == "False"


def test_search_help_shows_the_default_studys_values(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    # Each flag's entry, from its line to the next flag's, wrapped lines joined.
    entries = re.split(r"\n(?=  -)", capsys.readouterr().out)

    def help_of(flag: str) -> str:
        entry = next(e for e in entries if e.lstrip().startswith(flag + " "))
        return " ".join(entry.split())

    assert help_of("--epochs").endswith("epochs per child training (default: 10)")
    assert help_of("--n-trials").endswith("(default: 25)")
    assert help_of("--objectives").endswith("(default: accuracy,params,flops)")
    assert help_of("--dedup,").endswith("train every candidate")  # its help says the default
    assert help_of("--autotune,").endswith("(default: off)")
    assert "default" not in help_of("--seed")  # no default seed: unseeded


def test_bench_prints_one_row_per_sampler_and_the_curve(tmp_path, capsys):
    import itertools

    from tests.test_bench import HEADER, OPS, _synthetic_row

    table = tmp_path / "nb201.csv"
    cells = itertools.product(OPS, repeat=6)
    table.write_text(HEADER + "".join(_synthetic_row(i, c) for i, c in enumerate(cells)))
    argv = ["bench", "nb201", "--table", str(table), "--sampler", "random,evolution"]
    assert main([*argv, "--runs", "3", "--budget", "1000", "--curve"]) == 0
    out = capsys.readouterr().out
    assert "3 runs per sampler, budget 1,000 s" in out
    assert "| random | " in out and "| evolution | " in out and " ± " in out
    assert "by simulated seconds spent" in out and "| 1,000 |" in out
    # One run has no spread, and a budget too small for any result at its half says so.
    assert main([*argv, "--runs", "1", "--budget", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 run per sampler" in out and " ± " not in out
    assert "| none yet |" in out and "nan" not in out


def test_python_m_optnas_lists_the_result_commands_without_importing_torch():
    done = subprocess.run([sys.executable, "-m", "optnas", "--help"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    for command in ("dashboard", "report", "export", "retrain"):
        assert command in done.stdout
    check = subprocess.run(
        [sys.executable, "-c",
         "import optnas, sys; optnas.load_model; print('plotly' in sys.modules, "
         "'optnas.report' in sys.modules)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.stdout.strip() == "False False"


def test_export_command_writes_the_best_trial(finished_study, tmp_path, capsys):
    _, storage, _ = finished_study
    argv = ["export", "--storage", storage, "--trial", "best", "-o", str(tmp_path / "x")]
    assert main([*argv, "--format", "json,weights"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Trial ") and "architecture.json" in out and "weights.pt" in out
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "architecture.json",
        "weights.pt",
    ]


def test_search_keep_weights_flag(in_tmp):
    argv = ["search", "--n-trials", "2", "--epochs", "1", "--objectives", "accuracy"]
    assert main([*argv, "--keep-weights", "0", "--study-name", "k0"]) == 0
    study = optuna.load_study(study_name="k0", storage="sqlite:///studies/k0.db")
    assert (in_tmp / "studies" / "k0.artifacts").is_dir()
    metas = [optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
             for t in study.trials]  # fmt: skip
    assert all([m.filename for m in ms] == ["architecture.svg"] for ms in metas)


def test_a_run_whose_trials_all_fail_exits_1(in_tmp, capfd):
    url = enqueued_study(in_tmp, "f", [{"kind": "oom"}] * 2)
    argv = ["search", "--space", "conftest:failing_space", "--objectives", "accuracy",
            "--storage", url, "--study-name", "f", "--n-trials", "2", "--epochs", "1"]  # fmt: skip
    assert main(argv) == 1
    err = capfd.readouterr().err
    assert "optnas search: error: All 2 trials of this search failed. Trial 0 failed with " \
           "OutOfMemoryError: CUDA out of memory" in err  # fmt: skip


def test_failed_trials_print_one_traceback_and_show_prints_each(in_tmp, capfd):
    url = enqueued_study(in_tmp, "f", [{"kind": k} for k in ("oom", "ok", "oom", "oom")])
    argv = ["search", "--space", "conftest:failing_space", "--objectives", "accuracy",
            "--storage", url, "--study-name", "f", "--n-trials", "4", "--epochs", "1"]  # fmt: skip
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert err.count("Traceback (most recent call last)") == 1  # the first failure's...
    assert 'in forward\n    raise torch.OutOfMemoryError("CUDA out' in err  # ...to its source
    assert "Trial 2 failed: OutOfMemoryError: CUDA out of memory" in err
    assert "failed with value" not in err
    assert "Failed trials:\n  trial 0: OutOfMemoryError" in out
    show = f"optnas show --storage {url} --study-name f --trial 3"
    assert f"A failed trial's record and traceback: {show}" in out
    assert main(show.split()[1:]) == 0
    shown = capfd.readouterr().out
    assert shown.startswith("Trial 3 of study 'f': fail\n  suggested: {'kind': 'oom'}\n")
    assert 'in forward\n    raise torch.OutOfMemoryError("CUDA out' in shown
    assert main(["show", "--storage", url, "--trial", "best"]) == 0
    assert "Trial 1 of study 'f': complete\n  accuracy: 0." in capfd.readouterr().out


def test_a_front_of_trials_trained_with_different_recipes_says_so():
    # After a fork that changed the training, the copied trials stay on the front.
    from optnas.cli import summary

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "params"])
    for acc, params, epochs in ((0.9, 500, 1), (0.95, 900, 5), (0.8, 300, 5)):
        attrs = {"arch": f"a{params}", "training": {"epochs": epochs, "lr": 0.1}}
        study.add_trial(optuna.trial.create_trial(values=[acc, params], user_attrs=attrs))
    lines = summary(study).splitlines()
    table = lines[lines.index("Pareto-optimal trials:") + 1 :]
    assert table[0].split() == ["trial", "accuracy", "params", "flops", "recipe",
                                "architecture"]  # fmt: skip
    assert [row.split()[-2] for row in table[1:4]] == ["r2", "r1", "r2"]  # by accuracy
    assert table[4:7] == [
        "Trained with different recipes (their results compare only so far):",
        "  r1: epochs 1",
        "  r2: epochs 5",
    ]
    alike = optuna.create_study(directions=["maximize", "minimize"])
    alike.set_metric_names(["accuracy", "params"])
    alike.add_trials([t for t in study.trials if t.user_attrs["training"]["epochs"] == 5])
    assert "recipe" not in summary(alike)


def test_the_summary_says_why_candidates_were_not_trained():
    from optnas.cli import summary

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "params"])
    pruned = optuna.trial.TrialState.PRUNED
    study.add_trial(optuna.trial.create_trial(values=[0.9, 100], user_attrs={"params": 100}))
    for attrs in ({"duplicate_of": 0, "train_seconds": 0.0}, {"params": 9e9}):
        study.add_trial(optuna.trial.create_trial(state=pruned, user_attrs=attrs))
    first, *_, hypervolume = [line for line in summary(study).splitlines() if line]
    assert first.endswith("(1 complete, 2 pruned, 0 failed; 2 not trained: 1 duplicate, "
                          "1 over budget)")  # fmt: skip
    assert "between the study's extremes:" in hypervolume  # no budgets: no "within"


def test_objectives_separated_by_a_space_are_explained(in_tmp, capsys):
    # argparse took "params" for the study file: "No study file 'params'." said nothing more.
    assert main(["search", "--objectives", "accuracy", "params"]) == 1
    err = capsys.readouterr().err
    assert "separate several objectives with commas, as in --objectives accuracy,params" in err


def test_the_best_trial_of_a_study_without_accuracy_is_best_in_its_first_objective(
    tmp_path, capsys
):
    # A survey of costs (params, latency): "best" was the largest network.
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(storage=url, study_name="s", directions=["minimize"] * 2)
    study.set_metric_names(["params", "latency"])
    for values in ([16_210, 0.1], [9_394, 0.3], [12_000, 0.2]):
        study.add_trial(optuna.trial.create_trial(values=values))
    assert main(["show", "--storage", url, "--trial", "best"]) == 0
    assert capsys.readouterr().out.startswith("Trial 1 of study 's': complete\n")


def test_show_counts_trials_still_running_or_waiting(tmp_path, capsys):
    url = enqueued_study(tmp_path, "r", [{"x": 1}, {"x": 2}])
    optuna.load_study(study_name="r", storage=url).ask()  # as a killed search leaves one
    assert main(["show", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "Study 'r': 2 trials (0 complete, 0 pruned, 0 failed, 1 running, 1 waiting)" in out


def test_objective_names_of_the_cli_are_those_of_search():
    from optnas.cli import OBJECTIVE_NAMES
    from optnas.search import OBJECTIVES

    assert tuple(OBJECTIVES) == OBJECTIVE_NAMES


def test_flags_that_only_fit_together_are_taken_together(in_tmp, capsys):
    # Median needs one objective: the default file has three, the flags make it one.
    argv = ["search", "--objectives", "accuracy", "--pruner", "median", "--data", "wine",
            "--n-trials", "1", "--epochs", "1"]  # fmt: skip
    assert main(argv) == 0
    assert main(["search", "--pruner", "median", "--objectives", "accuracy,params"]) == 1
    assert "works with one objective only" in capsys.readouterr().err


def test_a_trial_failed_for_its_dead_worker_says_so_from_its_retry(tmp_path, capsys):
    from optnas.cli import summary
    from optnas.storage import retry

    url = f"sqlite:///{tmp_path}/d.db"
    study = optuna.create_study(storage=url, study_name="d")
    trial = study.ask({"x": optuna.distributions.IntDistribution(0, 3)})
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # as Optuna fails a stale trial
    retry(study, study.trials[0], "its worker (vm:7) stopped sending heartbeats")
    why = "its worker (vm:7) stopped sending heartbeats; queued again as trial 1 (waiting)"
    assert main(["show", "--storage", url, "--study-name", "d", "--trial", "0"]) == 0
    assert f"  fail_reason: {why}" in capsys.readouterr().out
    assert f"Failed trials:\n  trial 0: {why}\n" in summary(study, url)


def test_a_reader_that_stops_early_is_not_an_error(finished_study):
    # `optnas show | head -1`: the pipe is closed before the command writes.
    _, storage, _ = finished_study
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as usual
    argv = [sys.executable, "-m", "optnas", "show", "--storage", storage]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141  # 128 + SIGPIPE, as a shell tool ends
    assert err.decode() == ""
