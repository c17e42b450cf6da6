"""The ``optnas`` command: ``optnas search`` runs a study, ``optnas show`` prints one;
``dashboard``, ``report``, ``export`` and ``retrain`` make its results usable."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import os
import re
import shlex
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = ["main"]

# Kept here rather than imported, so that `optnas --help` does not import torch or optuna.
DEFAULT_OBJECTIVES = ("accuracy", "params", "flops")  # Those of optnas/default.toml.
OBJECTIVE_NAMES = ("accuracy", "params", "flops", "macs", "latency")  # search.OBJECTIVES
SAMPLER_NAMES = ("auto", "tpe", "gp", "nsga2", "random", "evolution", "controller")
NB201_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``optnas`` command line; returns the exit status.

    Example:
        >>> main(["show", "--storage", "sqlite:///:memory:"])  # doctest: +SKIP
    """
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # Said with the command's usage, not the top level's.
        command = parser.commands.get(args.command, parser)  # type: ignore[attr-defined]
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 2
    if os.getcwd() not in sys.path and "" not in sys.path:
        # As `python -m optnas` would: a space in ./myspace.py resolves as "myspace:fn".
        # Last, so that a file here never hides an installed package.
        sys.path.append(os.getcwd())
    from optnas._signals import interrupts_once
    from optnas.errors import SearchError, StorageError, Terminated, interruption

    # A search's trials must be recorded as interrupted: its signals interrupt once. Any
    # other command has nothing to record, and a server (dashboard) may swallow the
    # KeyboardInterrupt a signal raises in a request: there, signals keep their defaults.
    searching = args.command in ("search", "worker")
    try:
        with interrupts_once(sigterm=True) if searching else contextlib.nullcontext():
            status = args.run(args)
            if sys.stdout is not None:  # None where it was closed (`>&-`)
                sys.stdout.flush()  # Here, not at exit: a reader gone is handled below.
            return status
    except BrokenPipeError as error:
        if not _stdout_closed():
            print(f"optnas {args.command}: error: {error}", file=sys.stderr)
            return 1
        # `optnas show | head`: the reader has all it wanted. Python's flush at exit
        # must not fail again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # SIGPIPE's number, as a shell tool ends
    except (
        ValueError,
        TypeError,
        OSError,  # a file, a port, a download
        ModuleNotFoundError,
        SearchError,
        StorageError,
    ) as error:
        print(f"optnas {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        status = 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)
        if getattr(args, "supervised", False):  # Its parent says it, for all its workers.
            return status
        print(
            f"optnas {args.command}: interrupted ({interruption(stop)})"
            + ("; running trials were recorded as failed and queued again, and the same "
               "command resumes the study with them" if searching else ""),
            file=sys.stderr,
        )  # fmt: skip
        return status


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader is gone (Linux reports POLLERR,
    BSD and macOS POLLHUP); False where that cannot be told."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        gone = select.POLLERR | select.POLLHUP
        return any(events & gone for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file descriptor
        return False


def _parser() -> argparse.ArgumentParser:
    # No abbreviations: `--trials 3` would be taken for --trials-per-device 3.
    parser = argparse.ArgumentParser(
        prog="optnas",
        description="Neural architecture search as an Optuna plugin.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False),
    )
    search = commands.add_parser(
        "search",
        help="run a NAS study: a study file, or the default study on digits",
        description="Run a NAS study and print its Pareto-optimal trials. FILE is a study "
        "file (TOML; see studies/ and optnas.definition); without one, the default study: "
        "convnet on digits, objectives accuracy, params and FLOPs, 25 trials x 10 epochs. "
        "Flags override the file's values; the defaults shown are the default study's.",
        formatter_class=_DefaultsShown,
    )
    search.set_defaults(run=_search)
    search.add_argument("file", nargs="?", help="a study file, e.g. studies/digits.toml")
    _add_search_flags(search)
    search.add_argument(
        "--artifacts",
        help="folder for each trial's diagram and the kept weights (default: beside the "
        "SQLite file, studies/NAME.artifacts)",
    )
    search.add_argument(
        "--no-artifacts",
        dest="artifacts",
        action="store_const",
        const=False,
        help="keep no diagrams or weights, whatever the study file says",
    )
    search.add_argument(
        "--keep-weights",
        type=_whole_number,
        help="keep the weights of a trial among this many best when it ends",
    )
    _add_study_arguments(search, creates=True)

    worker = commands.add_parser(
        "worker",
        help="join an existing study and run its trials (on this machine or another)",
        description="Join the study --study-name in --storage and run trials of it: the "
        "space, data, objectives and the rest come from the definition recorded with the "
        "study. Start as many workers as you like, on as many machines as reach the "
        "storage (PostgreSQL for many machines). Each uses every core it sees: for several "
        "on one machine, `optnas search --workers N` shares the cores out, or give each "
        "its own (taskset, OMP_NUM_THREADS).",
    )
    worker.set_defaults(run=_worker)
    worker.add_argument("--storage", required=True, help="the study's database URL")
    worker.add_argument("--study-name", "--study", required=True, help="the study to join")
    worker.add_argument(
        "--n-trials",
        type=_unlimited_or_positive_int,
        help="trials this worker runs, or 'unlimited' (default: the study's)",
    )
    worker.add_argument("--timeout", type=_positive_float, help="stop starting trials after S s")
    worker.add_argument(
        "--devices", "--device", help="devices of this worker (default: the study's)"
    )
    worker.add_argument(
        "--trials-per-device",
        type=_auto_or_positive_int,
        help="child trainings at once per device (default: the study's)",
    )
    worker.add_argument("--quiet", action="store_true", help="no progress bar, no summary")

    show = commands.add_parser("show", help="print a study's best (Pareto-optimal) trials")
    show.set_defaults(run=_show)
    _add_study_arguments(show)
    show.add_argument(
        "--definition", action="store_true", help="print the study's definition as a study file"
    )
    show.add_argument(
        "--trial",
        type=_trial_number,
        help="print this trial's record (or 'best's): values, parameters, user attrs, and "
        "where it failed",
    )
    _add_results(commands)
    _add_bench(commands)
    parser.commands = commands.choices  # type: ignore[attr-defined]
    return parser


def _add_results(commands: Any) -> None:
    dashboard = commands.add_parser(
        "dashboard", help="open the study database in optuna-dashboard (diagrams included)"
    )
    dashboard.set_defaults(run=_dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    dashboard.add_argument("--port", type=_port, default=8080, help="(default: 8080)")
    _add_study_arguments(dashboard, artifacts=True)

    report = commands.add_parser("report", help="write an HTML report of a study")
    report.set_defaults(run=_report)
    report.add_argument("-o", "--output", default="report.html", help="(default: report.html)")
    _add_study_arguments(report)

    export = commands.add_parser(
        "export", help="write a trial's architecture, weights, ONNX and TorchScript files"
    )
    export.set_defaults(run=_export)
    _add_trial_argument(export)
    export.add_argument("-o", "--output", help="folder to write (default: trial-N)")
    export.add_argument(
        "--format",
        type=_names,
        default=("json", "weights", "onnx", "torchscript"),
        help="comma-separated, from json, weights, onnx, torchscript (default: all)",
    )
    _add_study_arguments(export, artifacts=True)

    retrain = commands.add_parser(
        "retrain",
        help="train a trial's architecture on train+validation and report test accuracy",
    )
    retrain.set_defaults(run=_retrain)
    _add_trial_argument(retrain)
    retrain.add_argument("--epochs", type=_positive_int, help="epochs (default: the trial's own)")
    retrain.add_argument("--seed", type=int, default=0, help="(default: 0)")
    retrain.add_argument("--devices", "--device", default="auto", help="(default: auto)")
    retrain.add_argument(
        "--data", help="the image folder the study was searched on, where it has moved"
    )
    retrain.add_argument(
        "--data-dir", help="the folder holding torchvision's sets, where not the search's"
    )
    _add_study_arguments(retrain, artifacts=True)


class _DefaultsShown(argparse.HelpFormatter):
    """Ends each flag's help with the default study's value, where the help does not say.

    The values come from the resolved default study file, read (torch imported) only
    when ``optnas search --help`` is printed.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text, defaults = action.help, _default_study()
        value = defaults.get(action.dest, defaults.get(f"{action.dest}.name"))
        if text is None or "default" in text or value is None:
            return text
        return f"{text} (default: {_shown_default(value)})"


@functools.cache
def _default_study() -> dict[str, Any]:
    from optnas.definition import DEFAULT_FILE, load

    return load(DEFAULT_FILE).flat()


def _shown_default(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).replace("%", "%%")  # argparse formats help with %


def _add_search_flags(search: argparse.ArgumentParser) -> None:
    """Flags of ``optnas search``; each overrides one key of the study file (``key``)."""

    flags: dict[str, str] = {}  # study-file key -> its flag, to name it in errors

    def flag(*names: str, key: str, **kwargs: Any) -> None:
        kwargs.setdefault("default", None)
        if "action" not in kwargs:  # --epochs EPOCHS, not --epochs TRAIN.EPOCHS
            kwargs.setdefault("metavar", names[0].removeprefix("--").upper().replace("-", "_"))
        search.add_argument(*names, dest=key, **kwargs)
        flags[key] = names[0]

    search.set_defaults(flag_of=flags)

    flag("--space", key="space", help="convnet, nb201, mlp, auto, or package.module:function")
    flag(
        "--data",
        key="data.name",
        help="digits, wine, breast_cancer (embedded); mnist, fashion_mnist, cifar10, cifar100 "
        "(torchvision, from --data-dir); or a folder of class subfolders",
    )
    flag("--data-dir", key="data.root", help="folder holding torchvision's datasets")
    flag(
        "--download",
        key="data.download",
        action=argparse.BooleanOptionalAction,
        help="download a torchvision dataset missing from --data-dir (needs network access)",
    )
    flag("--image-size", key="data.image_size", type=_positive_int,
         help="resize the images of a folder to this side")  # fmt: skip
    flag("--split-seed", key="data.split_seed", type=int, help="seed of the data split")
    flag(
        "--objectives",
        key="objectives",
        type=_objective_names,
        help="comma-separated, from accuracy, params, flops, macs, latency",
    )
    flag("--n-trials", key="n_trials", type=_unlimited_or_positive_int,
         help="candidates to train, or 'unlimited' (until --timeout or Ctrl-C)")  # fmt: skip
    flag("--timeout", key="timeout", type=_positive_float, help="stop starting trials after S s")
    flag("--epochs", key="train.epochs", type=_positive_int, help="epochs per child training")
    flag("--sampler", key="sampler", help=f"{', '.join(SAMPLER_NAMES)}, or a package path")
    flag(
        "--pruner",
        key="pruner",
        help="auto, median, hyperband, sha (one objective), pareto, pareto-halving, none",
    )
    flag(
        "--budget",
        key="budgets",
        type=_budget,
        action="append",
        metavar="KEY=MAX",
        help="skip networks with more params/flops/macs/latency (ms) than MAX (repeatable)",
    )
    flag("--latency-batch-size", key="latency_batch_size", type=_positive_int,
         help="batch size at which latency (ms) is timed")  # fmt: skip
    flag(
        "--dedup",
        key="dedup",
        action=argparse.BooleanOptionalAction,
        help="train an architecture the study already trained once only (default); "
        "--no-dedup: train every candidate",
    )
    flag("--batch-size", key="train.batch_size", type=_positive_int, help="training batch size")
    flag("--lr", key="train.lr", type=_positive_float, help="peak learning rate")
    flag("--optimizer", key="train.optimizer", help="adamw, sgd (one-cycle schedule)")
    flag("--label-smoothing", key="train.label_smoothing", type=float, help="label smoothing")
    flag("--augment", key="train.augment",
         help="auto, none, crop, flip, crop+flip, batched on the device")  # fmt: skip
    flag(
        "--autotune",
        key="train.autotune",
        action=argparse.BooleanOptionalAction,
        help="cuDNN autotuning in each child (pays for long children only)",
    )
    flag("--precise-bn", key="train.precise_bn", type=_whole_number, metavar="N",
         help="score children on batch norm's statistics over the epoch's last N "
              "training samples (0: running averages)")  # fmt: skip
    flag(
        "--devices",
        "--device",
        key="devices",
        help="auto, cpu, cuda (every GPU), cuda:N, or a comma-separated list",
    )
    flag(
        "--trials-per-device",
        key="trials_per_device",
        type=_auto_or_positive_int,
        help="child trainings at once per device, each in a worker process",
    )
    flag("--seed", key="seed", type=int, help="seed of the sampler and the children")
    flag("--workers", key="workers", type=_positive_int,
         help="processes running trials at once on this machine")  # fmt: skip
    flag(
        "--heartbeat-interval",
        key="heartbeat_interval",
        type=_positive_int,
        help="seconds between heartbeats; a dead worker's trial is retried",
    )
    flag(
        "--fork",
        key="fork",
        metavar="NEW",
        help="continue under the name NEW from a copy of the study, with this definition",
    )


def _add_bench(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="compare samplers on a tabular benchmark (NAS-Bench-201)",
        description="Simulate searches on the NAS-Bench-201 table under the paper's protocol "
        "(12-epoch validation accuracy as the signal, 12/200 of the training time per "
        "evaluation, a budget in simulated seconds) and print, per sampler, the mean ± std "
        "over runs of the 200-epoch test accuracy of the cell with the best signal.",
    )
    bench.set_defaults(run=_bench)
    bench.add_argument("benchmark", choices=("nb201",), help="the benchmark: nb201")
    bench.add_argument("--table", help="the table's CSV (default: $OPTNAS_NB201_TABLE or "
                       "shared/benchmarks/nb201/nb201.csv beside the checkout)")  # fmt: skip
    bench.add_argument("--dataset", default="cifar10", choices=NB201_DATASETS)
    bench.add_argument(
        "--sampler",
        default="auto",
        help=f"one or more of {', '.join(SAMPLER_NAMES)}, comma-separated (default: auto)",
    )
    bench.add_argument("--runs", type=_positive_int, default=10, help="runs per sampler")
    bench.add_argument(
        "--budget", type=_positive_float, default=12_000.0, help="simulated seconds (12000)"
    )
    bench.add_argument("--seed", type=int, default=0, help="seed of the first run (0)")
    bench.add_argument(
        "--curve", action="store_true", help="also print the mean result over the budget"
    )
    bench.add_argument(
        "--no-costs",
        dest="costs",
        action="store_false",
        help="trials do not record their cells' parameter counts (optnas's objective does)",
    )


def _bench(args: argparse.Namespace) -> int:
    import optuna

    from optnas.bench import nb201

    names = [n.strip() for n in args.sampler.split(",") if n.strip()]
    unknown = [n for n in names if n not in SAMPLER_NAMES]
    if unknown or not names:
        raise ValueError(
            f"Unknown sampler {(unknown or names or [''])[0]!r}; valid names: "
            f"{', '.join(SAMPLER_NAMES)}."
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = nb201.Table.load(args.table, args.dataset)
    print(f"NAS-Bench-201 {args.dataset}: {_count(args.runs, 'run')} per sampler, budget "
          f"{args.budget:,.0f} s, seeds {args.seed}..{args.seed + args.runs - 1}")  # fmt: skip
    print("| sampler | test accuracy (%) | at half budget | evaluations | sampling ms/trial |")
    print("| --- | --- | --- | --- | --- |")
    results = {}
    for name in names:
        runs = nb201.compare([name], table, runs=args.runs, budget=args.budget,
                             seed=args.seed, costs=args.costs)[name]  # fmt: skip
        results[name] = runs
        print(_bench_row(name, runs, args.budget), flush=True)
    if args.curve:
        print(_bench_curve(results, args.budget))
    return 0


def _bench_row(name: str, runs: list[Any], budget: float) -> str:
    import statistics

    final = [r.result for r in runs]
    half = [r.reported_at(budget / 2) for r in runs]
    spread = f" ± {statistics.stdev(final):.2f}" if len(final) > 1 else ""  # one run: none
    at_half = statistics.mean(half)
    evaluations = statistics.mean(len(r.spent) for r in runs)
    ms = 1000 * sum(r.sampling_seconds for r in runs) / sum(len(r.spent) for r in runs)
    return (f"| {name} | {statistics.mean(final):.2f}{spread} | "
            f"{'none yet' if math.isnan(at_half) else f'{at_half:.2f}'} | {evaluations:.0f} | "
            f"{ms:.1f} |")  # fmt: skip


def _bench_curve(results: dict[str, list[Any]], budget: float) -> str:
    import statistics

    steps = [budget * f for f in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)]
    lines = ["", "Mean test accuracy (%) of the best cell so far, by simulated seconds spent:",
             "| sampler | " + " | ".join(f"{s:,.0f}" for s in steps) + " |",
             "| --- |" + " --- |" * len(steps)]  # fmt: skip
    for name, runs in results.items():
        cells = [statistics.mean(r.reported_at(s) for r in runs) for s in steps]
        lines.append(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return "\n".join(lines)


def _add_study_arguments(
    parser: argparse.ArgumentParser, *, artifacts: bool = False, creates: bool = False
) -> None:
    parser.add_argument("--storage", help="database URL (default: sqlite:///studies/NAME.db)")
    parser.add_argument(
        "--study-name",
        help="study to create or resume (default: derived from space, data, objectives)"
        if creates
        else "the study (default: the only one in --storage, else the default study's, "
        "convnet-digits-accuracy-params-flops)",
    )
    if artifacts:
        parser.add_argument(
            "--artifacts",
            help="the artifact folder (default: the one recorded with the study, else "
            "beside the SQLite file)",
        )


def _add_trial_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trial",
        type=_trial_number,
        required=True,
        help="trial number, or 'best': the most accurate Pareto-optimal trial (without "
        "accuracy, the best of them in the first objective)",
    )


def _dashboard(args: argparse.Namespace) -> int:
    from optnas.dashboard import dashboard

    storage = args.storage or _storage_url(None, args.study_name or _default_name(args))
    dashboard(
        storage,
        artifacts=args.artifacts,
        study_name=args.study_name,
        host=args.host,
        port=args.port,
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from optnas.report import report

    study = _load(args)
    print(f"Wrote {report(study, args.output)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from optnas.export import export, trial_of

    study = _load(args)
    trial = trial_of(study, _resolve_trial(study, args.trial))
    files = export(
        study,
        trial,
        args.output or f"trial-{trial.number}",
        artifacts=args.artifacts,
        formats=args.format,
    )
    print(f"Trial {trial.number} ({trial.user_attrs.get('arch', '')}):")
    for path in files.values():
        print(f"  {path}")
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from optnas.retrain import retrain

    study = _load(args)
    number = _resolve_trial(study, args.trial)
    result = retrain(
        study,
        number,
        epochs=args.epochs,
        seed=args.seed,
        device=args.devices,
        data=args.data,
        data_dir=args.data_dir,
        artifacts=args.artifacts,
    )
    print(
        f"Trial {number} retrained from scratch on train+validation "
        f"({result.train_samples:,} samples, {_count(result.epochs, 'epoch')}, "
        f"{result.seconds:.1f} s): test accuracy {result.test_accuracy:.4f} on "
        f"{result.test_samples:,} test samples"
    )
    return 0


def _load(args: argparse.Namespace) -> optuna.Study:
    from optnas.storage import open_study

    return open_study(args.study_name or _default_name(args), args.storage)


def _resolve_trial(study: optuna.Study, trial: int | str) -> int:
    """A trial number; ``"best"``: the most accurate of the best (Pareto-optimal) trials
    (in a study without accuracy, the best of them in its first objective)."""
    if trial != "best":
        return int(trial)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        raise ValueError(f"Study {study.study_name!r} has no completed trial yet.")
    names = study.metric_names or []
    if len(study.directions) == 1:
        return study.best_trial.number
    index = names.index("accuracy") if "accuracy" in names else 0
    sign = 1 if study.directions[index].name == "MAXIMIZE" else -1
    return max(study.best_trials, key=lambda t: sign * t.values[index]).number


def _search(args: argparse.Namespace) -> int:
    import optuna

    from optnas.definition import DEFAULT_FILE, load

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.file in OBJECTIVE_NAMES and not os.path.exists(args.file):
        raise ValueError(
            f"No study file {args.file!r}: separate several objectives with commas, as in "
            f"--objectives accuracy,{args.file}."
        )
    file = load(args.file or DEFAULT_FILE)
    overrides = _overrides(args)
    definition = _with_flags(file, overrides, args.flag_of)
    with _short_failures():  # A run whose every trial failed raises SearchError: exit 1.
        study = definition.search(fork=args.fork, show_progress_bar=True)
    print(summary(study, _storage_url(definition["storage"], study.study_name)))
    return 0


def _with_flags(file: Any, overrides: dict[str, Any], flag_of: dict[str, str]) -> Any:
    """The study file with the flags' values; an error names the flag at fault where one
    alone is (--optimizer: ...), not the study-file key."""
    from optnas.definition import DefinitionError

    source = f"{file.source} with the flags given"
    try:
        return file.replace(overrides, source=source)
    except DefinitionError as error:
        why = str(error).removeprefix(f"{source}: ")
        named = re.search(r"key '([^']+)'", why)
        key = named.group(1) if named else ""
        parent = key.rsplit(".", 1)[0]  # space for space.name, budgets for budgets.params
        flag = flag_of.get(key) or flag_of.get(parent)
        if flag is None or not {key, parent} & set(overrides):
            raise  # The file's own value: the message names the file and the key.
        raise DefinitionError(f"{flag}: {why.removeprefix(f'key {key!r}: ')}") from None


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The study-file keys the flags set: ``{"train.epochs": 5, ...}``."""
    given = {
        key: value
        for key, value in vars(args).items()
        if value is not None and (key in _FILE_KEYS or "." in key)
    }
    for key, value in given.pop("budgets", []):
        given[f"budgets.{key}"] = value
    if "objectives" in given:
        given["objectives"] = list(given["objectives"])
    return given


# Flags that set top-level keys of a study file (dotted dests set keys of its tables).
_FILE_KEYS = frozenset(
    {"space", "objectives", "n_trials", "timeout", "sampler", "pruner", "budgets",
     "latency_batch_size", "dedup", "devices", "trials_per_device", "seed", "storage",
     "study_name", "workers", "heartbeat_interval", "artifacts", "keep_weights"}
)  # fmt: skip


def _worker(args: argparse.Namespace) -> int:
    from optnas.workers import pin_to_given_cores, stop_with_the_parent

    pin_to_given_cores()  # First: torch sizes its thread pools from the cores when imported.
    args.supervised = stop_with_the_parent()  # by `optnas search --workers N`
    import optuna

    from optnas.workers import work

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _short_failures():
        study = work(
            args.storage,
            args.study_name,
            n_trials=args.n_trials,
            timeout=args.timeout,
            devices=args.devices,
            trials_per_device=args.trials_per_device,
            show_progress_bar=not args.quiet,
        )
    if not args.quiet:
        print(summary(study, _storage_url(args.storage, study.study_name)))
    return 0


def _show(args: argparse.Namespace) -> int:
    from optnas.definition import Definition
    from optnas.storage import open_study

    name = args.study_name or _default_name(args)
    study = open_study(name, args.storage)
    if args.definition:
        definition = Definition.from_study(study)
        print(f"# The definition of study {study.study_name!r}, as a study file.")
        if definition.python_objects():
            print(
                "# It cannot be run as it is: what optnas.search was given as Python objects "
                "(names in <...>) must be named instead (a built-in name or "
                "'package.module:attribute')."
            )
        print(definition.to_toml(), end="")
        return 0
    if args.trial is not None:
        from optnas.export import trial_of

        print(describe(study, trial_of(study, _resolve_trial(study, args.trial))))
        return 0
    print(summary(study, _storage_url(args.storage, study.study_name)))
    return 0


class _ShortFailures(logging.Filter):
    """Optuna's warnings of failed trials, shortened: the first failure with its
    traceback, later ones in one line each (each trial records its own traceback)."""

    def __init__(self) -> None:
        super().__init__()
        self.traceback_shown = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if " failed with value " in message:  # Optuna's second line of every failure
            return False
        if not record.exc_info or " failed with parameters: " not in message:
            return True
        error = record.exc_info[1]
        if error is None:
            return True
        number = message.split(" failed", 1)[0]
        if isinstance(error, KeyboardInterrupt):
            from optnas.errors import interruption

            how = interruption(error)
            return _one_line(record, f"{number} interrupted ({how}); recorded as failed")
        if not self.traceback_shown:
            self.traceback_shown = True
            text = getattr(error, "traceback_text", None)
            if text:  # Raised again without its frames: the text tells where it failed.
                record.exc_info, record.exc_text = None, text.rstrip()
            return True
        return _one_line(record, f"{number} failed: {type(error).__name__}: {error}")


def _one_line(record: logging.LogRecord, message: str) -> bool:
    record.msg, record.args, record.exc_info, record.exc_text = message, (), None, None
    return True


@contextlib.contextmanager
def _short_failures() -> Iterator[None]:
    logger = logging.getLogger("optuna.study._optimize")
    short = _ShortFailures()
    logger.addFilter(short)
    try:
        yield
    finally:
        logger.removeFilter(short)


def _default_name(args: argparse.Namespace) -> str:
    """The only study in ``--storage``; without one, the default study's name where its
    file is in ``studies/``, else the only study file there.

    Raises:
        ValueError: Several studies, or no study file at all, to choose from.
    """
    if args.storage:
        import optuna

        from optnas.storage import _open_storage

        names = optuna.get_all_study_names(_open_storage(args.storage, create=False))
        if len(names) == 1:
            return names[0]
        if names:
            raise ValueError(f"Several studies in this storage; pass --study-name: {names}.")
    default = "-".join(["convnet", "digits", *DEFAULT_OBJECTIVES])
    if args.storage:
        return default
    from optnas.storage import STUDIES_DIR

    files = sorted(STUDIES_DIR.glob("*.db"))
    if any(f.stem == default for f in files) or not files:
        return default  # (none: the error names the default study's file)
    if len(files) == 1:
        return files[0].stem
    raise ValueError(
        f"No default study ({STUDIES_DIR / (default + '.db')}) here, and {len(files)} study "
        f"files in {STUDIES_DIR}/: pass --study-name, one of: "
        f"{', '.join(f.stem for f in files)}."
    )


def _storage_url(storage: str | None, study_name: str) -> str:
    from optnas.storage import storage_url

    return storage_url(storage, study_name)


def summary(study: optuna.Study, storage_url: str | None = None) -> str:
    """A study's trial counts and its best (Pareto-optimal) trials as a table.

    Example:
        >>> import optuna
        >>> summary(optuna.create_study(study_name="empty")).splitlines()[0]
        "Study 'empty': 0 trials (0 complete, 0 pruned, 0 failed)"
    """
    from collections import Counter

    import optuna

    counts = Counter(t.state for t in study.trials)
    state = optuna.trial.TrialState
    from optnas.search import _untrained

    untrained = [t for t in study.trials if _untrained(t)]
    duplicates = sum("duplicate_of" in t.user_attrs for t in untrained)
    why = [f"{n} {what}" for n, what in ((duplicates, "duplicates" if duplicates > 1 else
           "duplicate"), (len(untrained) - duplicates, "over budget")) if n]  # fmt: skip
    skipped = f"; {len(untrained)} not trained: {', '.join(why)}" if untrained else ""
    lines = [
        f"Study {study.study_name!r}: {_count(len(study.trials), 'trial')} "
        f"({counts[state.COMPLETE]} complete, {counts[state.PRUNED]} pruned, "
        f"{counts[state.FAIL]} failed{skipped}{_unfinished(counts)})"
    ]
    if counts[state.COMPLETE]:
        best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
        title = "Pareto-optimal trials" if len(best) > 1 or len(study.directions) > 1 else "Best"
        lines += ["", f"{title}:", *_table(study, best)]
        if len(study.directions) > 1:
            lines += ["", _hypervolume_line(study)]
    failed = [t for t in study.trials if t.state == state.FAIL]
    if failed:
        lines += ["", *_failure_lines(study, failed, storage_url)]
    if storage_url and not storage_url.endswith(":memory:"):
        # optuna-dashboard takes a journal file by its path.
        plain = storage_url.removeprefix("journal:").removeprefix("//")
        lines += [
            "",
            f"Dashboard: optnas dashboard --storage {storage_url} --study-name {study.study_name}",
            f"           (with the study's diagrams and kept weights, where it has an artifact "
            f"store; plain: optuna-dashboard {plain})",
        ]
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _unfinished(counts: Mapping[Any, int]) -> str:
    """``", 1 running"`` and the like for trials not finished, where there are any (a
    running trial whose process died stays so until the storage's heartbeat fails it)."""
    import optuna

    state = optuna.trial.TrialState
    return "".join(
        f", {counts[s]} {s.name.lower()}" for s in (state.RUNNING, state.WAITING) if counts[s]
    )


def _fail_reason(
    trial: optuna.trial.FrozenTrial, trials: Sequence[optuna.trial.FrozenTrial]
) -> str:
    """Why ``trial`` failed: its ``fail_reason``, else what the trial that retries it says
    (a trial whose worker stopped sending heartbeats is failed by Optuna, which records no
    reason on it); then, where it was queued again, as which trial, in which state."""
    retried = next(
        (o for o in trials if o.system_attrs.get("retry_history", [None])[-1] == trial.number),
        None,
    )
    reason = trial.user_attrs.get("fail_reason")
    if reason is None and retried is None:
        return "no reason recorded"
    if reason is None:
        why = retried.user_attrs.get("retry_reason", "")
        reason = why.removeprefix(f"retries trial {trial.number}, ") or "its worker died"
    if retried is not None:
        reason += f"; queued again as trial {retried.number} ({retried.state.name.lower()})"
    return reason


def _failure_lines(
    study: optuna.Study, failed: list[optuna.trial.FrozenTrial], storage_url: str | None
) -> list[str]:
    """The last failures' reasons, and the command that prints a failed trial's traceback."""
    shown = failed[-3:]
    lines = [f"Failed trials{' (the last 3)' if len(failed) > 3 else ''}:"]
    trials = study.get_trials(deepcopy=False)
    lines += [f"  trial {t.number}: {_fail_reason(t, trials)}" for t in shown]
    if storage_url is None or storage_url.endswith(":memory:"):
        return lines  # No command can reach it from another process.
    command = (
        f"optnas show --storage {shlex.quote(storage_url)} "
        f"--study-name {shlex.quote(study.study_name)} --trial {shown[-1].number}"
    )
    return [*lines, f"A failed trial's record and traceback: {command}"]


def describe(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    """One trial's record: state, values, suggested parameters and user attrs, then, for a
    failed trial, the traceback of its error.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(study_name="s")
        >>> study.enqueue_trial({"x": 1})
        >>> study.optimize(lambda t: t.suggest_int("x", 0, 3) / 4, n_trials=1)
        >>> print(describe(study, study.trials[0]))
        Trial 0 of study 's': complete
          value: 0.2500
          suggested: {'x': 1}
    """
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    if len(study.directions) == 1 and not study.metric_names:
        names = ["value"]
    lines = [f"Trial {trial.number} of study {study.study_name!r}: {trial.state.name.lower()}"]
    for name, value in zip(names, trial.values or [], strict=False):
        lines.append(f"  {name}: {_fmt(value, name)}")
    lines.append(f"  suggested: {trial.params}")
    attrs = {k: v for k, v in trial.user_attrs.items() if k != "fail_traceback"}
    if attrs:
        lines.append("  user attrs:")
        lines += [f"    {key}: {_fmt(value, key)}" for key, value in sorted(attrs.items())]
    if trial.state.name == "FAIL" and "fail_reason" not in trial.user_attrs:
        lines.append(f"  fail_reason: {_fail_reason(trial, study.get_trials(deepcopy=False))}")
    from optnas.retrain import runs_of

    for run in runs_of(study.user_attrs, trial.number):
        lines.append(
            f"  retrained: test accuracy {run['test_accuracy']:.4f} ({run['epochs']} epochs "
            f"on {run['train_samples']} train+validation samples, seed {run['seed']}, "
            f"{run['seconds']:.0f} s)"
        )
    if "fail_traceback" in trial.user_attrs:
        lines += ["", trial.user_attrs["fail_traceback"].rstrip()]
    return "\n".join(lines)


def _hypervolume_line(study: optuna.Study) -> str:
    from optnas.hypervolume import bounds_of, hypervolume

    bounds = ", ".join(
        f"{name} {_fmt(lo, name)}..{_fmt(hi, name)}" for name, (lo, hi) in bounds_of(study).items()
    )
    error = "error; " if "accuracy" in (study.metric_names or []) else ""
    budgets = any(t.constraints for t in study.get_trials(deepcopy=False))
    return (
        f"Hypervolume: {hypervolume(study):.4f} of the unit box ({error}costs log-scaled "
        f"between the study's extremes{' within its budgets' if budgets else ''}: {bounds}; "
        "reference point 1)"
    )


def _table(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    costs = [c for c in ("params", "flops") if c not in names]
    from optnas.retrain import runs_of

    attrs = study.user_attrs  # one read
    runs = {t.number: runs_of(attrs, t.number) for t in trials}
    tested = any(runs.values())  # a column for retrained trials' test accuracy
    labels, legend = _recipes(trials)  # a column where they were trained differently
    shown = ["latency (ms)" if n == "latency" else n for n in names]
    header = ["trial", *shown, *costs, *(["test"] if tested else []),
              *(["recipe"] if legend else []), "architecture"]  # fmt: skip
    rows = []
    for t in sorted(
        trials,
        key=lambda t: [_sort_key(v, d) for v, d in zip(t.values, study.directions, strict=True)],
    ):
        values = [_fmt(v, n) for v, n in zip(t.values, names, strict=True)]
        extra = [_fmt(t.user_attrs.get(c, ""), c) for c in costs]
        if tested:
            extra.append(_fmt(runs[t.number][-1]["test_accuracy"], "") if runs[t.number] else "")
        if legend:
            extra.append(labels[t.number])
        rows.append([str(t.number), *values, *extra, str(t.user_attrs.get("arch", t.params))])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return [
        "  ".join([*(c.rjust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]])
        for r in [header, *rows]
    ] + legend


def _recipes(trials: Sequence[optuna.trial.FrozenTrial]) -> tuple[dict[int, str], list[str]]:
    """Where ``trials`` were trained with more than one recipe (a fork that changed the
    training keeps its source's trials): a label per trial (``r1``, ``r2``, ...) and a
    line per recipe naming what differs; else ``({}, [])``."""
    from optnas.objective import recipe_of

    recipes: list[dict[str, Any]] = []
    labels = {}
    for t in trials:
        recipe = recipe_of(t) or {}
        if recipe not in recipes:
            recipes.append(recipe)
        labels[t.number] = f"r{recipes.index(recipe) + 1}"
    if len(recipes) < 2:
        return {}, []
    keys = sorted({k for r in recipes for k in r if len({repr(x.get(k)) for x in recipes}) > 1})
    lines = ["Trained with different recipes (their results compare only so far):"]
    for i, recipe in enumerate(recipes, start=1):
        differs = ", ".join(f"{k} {recipe.get(k, 'not recorded')}" for k in keys)
        lines.append(f"  r{i}: {differs or 'not recorded'}")
    return labels, lines


def _sort_key(value: float, direction: Any) -> float:
    return -value if direction.name == "MAXIMIZE" else value


def _fmt(value: Any, name: str) -> str:
    if name in ("params", "flops", "macs") and isinstance(value, (int, float)):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        return f"[{', '.join(f'{v:.4f}' for v in value)}]"
    return str(value)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _objective_names(text: str) -> tuple[str, ...]:
    names = _names(text)
    unknown = [n for n in names if n not in OBJECTIVE_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown objective {unknown[0]!r}; valid: {', '.join(OBJECTIVE_NAMES)}"
        )
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _whole_number(text: str) -> int:
    return 0 if text.strip() == "0" else _positive_int(text)


def _trial_number(text: str) -> int | str:
    if text == "best":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a trial number or 'best', got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"trial numbers start at 0, got {value}")
    return value


def _auto_or_positive_int(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"ports go from 1 to 65535, got {value}")
    return value


def _unlimited_or_positive_int(text: str) -> int | str:
    return "unlimited" if text == "unlimited" else _positive_int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _budget(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=MAX such as params=50000, got {text!r}")
    return key.strip(), _positive_float(value)


if __name__ == "__main__":
    sys.exit(main())
