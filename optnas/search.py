"""``search()``: resolve names into Optuna objects, then run the study."""

from __future__ import annotations

import contextvars
import os
import re
import shlex
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import optuna

from optnas._options import call_with_options, import_object, is_import_path, split_named
from optnas._signals import GRACE_SECONDS, interrupts_as_a_flag, interrupts_once
from optnas.cost import METRICS
from optnas.errors import SearchError, StorageError
from optnas.samplers import SamplerName, UnrepeatedSampler
from optnas.samplers import create as create_sampler
from optnas.storage import (  # noqa: F401  (re-exported: optnas.search.open_study & co.)
    STUDIES_DIR,
    _fork,
    _hide_password,
    _open_storage,
    _shared_url,
    default_storage,
    long_user_attr,
    open_study,
    set_long_user_attr,
)

if TYPE_CHECKING:
    from optnas.data import Dataset, DataSpec
    from optnas.definition import Definition
    from optnas.objective import Objective

__all__ = [
    "COSTS",
    "OBJECTIVES",
    "PRUNERS",
    "create_pruner",
    "default_storage",
    "open_study",
    "record",
    "search",
]

COSTS = (*METRICS, "latency")
"""Costs measured before training: objectives to minimize and possible budgets."""
OBJECTIVES: dict[str, str] = {"accuracy": "maximize", **{m: "minimize" for m in COSTS}}
"""Objective names and their directions."""
PRUNERS = ("auto", "median", "hyperband", "sha", "pareto", "pareto-halving", "none")

PrunerName = Literal["auto", "median", "hyperband", "sha", "pareto", "pareto-halving", "none"]
AugmentName = Literal["auto", "none", "crop", "flip", "crop+flip"]


def search(
    space: str | Mapping[str, Any] | Callable[..., Any] = "auto",
    data: str | tuple[Any, Any] | Dataset = "digits",
    objectives: Sequence[str] = ("accuracy",),
    *,
    n_trials: int | Literal["unlimited"] | None = 20,
    timeout: float | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-2,
    optimizer: Literal["adamw", "sgd"] = "adamw",
    label_smoothing: float = 0.0,
    augment: AugmentName = "auto",
    autotune: bool = False,
    precise_bn: int = 128,
    sampler: SamplerName | str | Mapping[str, Any] | optuna.samplers.BaseSampler = "auto",
    pruner: PrunerName | str | Mapping[str, Any] | optuna.pruners.BasePruner = "auto",
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    devices: str | Sequence[str] = "auto",
    trials_per_device: int | Literal["auto"] = "auto",
    seed: int | None = None,
    sampler_seed: int | None = None,
    budgets: Mapping[str, float] | None = None,
    latency_batch_size: int = 1,
    dedup: bool = True,
    max_initial_failures: int = 5,
    data_dir: str | os.PathLike[str] = "data",
    download: bool = False,
    image_size: int | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    fork: str | None = None,
    workers: int = 1,
    heartbeat_interval: int = 60,
    artifacts: str | os.PathLike[str] | Any | None = None,
    keep_weights: int = 5,
    show_progress_bar: bool = False,
) -> optuna.Study:
    """Search ``space`` for the networks that do best on ``data`` by ``objectives``.

    Each trial builds one network with ``space``, records its cost (params, FLOPs, MACs,
    latency), skips it untrained if it breaks a budget, trains it on the training split and
    scores it on the validation split. The test split is never read.

    Args:
        space: ``space(trial, spec) -> torch.nn.Module``, a built-in space's name
            (``"convnet"``, ``"nb201"``, ``"mlp"``; see ``optnas.spaces``), or ``"auto"``:
            ``convnet`` for images, ``mlp`` for flat features.
        data: A name in ``optnas.data.DATASETS`` (``"digits"``, ``"wine"``,
            ``"breast_cancer"``), an ``(X, y)`` pair, or an :class:`optnas.data.Dataset`.
        objectives: Names among ``"accuracy"`` (maximized), ``"params"``, ``"flops"``,
            ``"macs"`` and ``"latency"`` (milliseconds; minimized), in the order of the
            study's values.
        n_trials: Candidates to train in this call (added to any the study already has);
            None or ``"unlimited"``: no limit, until ``timeout``, an
            interruption, or the exhaustion below. Candidates over budget or already
            trained are recorded as pruned trials but not counted, since they cost no
            training; after 50 of them in a row the search stops, the space within budget
            looking exhausted.
        timeout: Stop starting trials after this many seconds.
        epochs: Training epochs of each child.
        batch_size: Training batch size.
        lr: Peak learning rate of the one-cycle schedule.
        optimizer: ``"adamw"`` or ``"sgd"`` (Nesterov momentum 0.9).
        label_smoothing: Cross-entropy label smoothing.
        augment: Batched image augmentation on the device: ``"crop"`` (random crop after
            padding), ``"flip"`` (horizontal), ``"crop+flip"``, ``"none"``, or ``"auto"``:
            the dataset's default (``crop+flip`` for CIFAR, Fashion-MNIST and image folders,
            ``crop`` for MNIST, none for digits and features).
        autotune: cuDNN autotuning in each child (see :func:`optnas.train.fit`).
        precise_bn: A child is scored on batch norm's statistics over the epoch's last
            batches holding at least ``precise_bn`` training samples, weighted by sample
            count, instead of its running averages, which lag early in a short training
            (0: the running averages; see :func:`optnas.train.fit`).
        sampler: A name of :data:`optnas.samplers.SAMPLERS` (resolved by
            :func:`optnas.samplers.create`; ``"auto"``: optnas's cost-aware Gaussian
            process, told which architectures are the same network by the space's key) or
            any Optuna sampler.
        pruner: ``"auto"`` (``"median"`` with one objective, ``"pareto"`` with several),
            ``"median"``, ``"hyperband"``, ``"sha"`` (Optuna's; one objective only),
            ``"pareto"``, ``"pareto-halving"`` (:mod:`optnas.pruners`; any number of
            objectives), ``"none"``, or any Optuna pruner.
        storage: A database URL, an Optuna storage, or None for the SQLite file
            ``studies/<study_name>.db`` under the working directory.
        study_name: The study to create or resume; by default derived from the space,
            the data and the objectives, so that the same call resumes the same study.
        devices: Where children train: ``"auto"`` (every visible GPU, else the CPU),
            ``"cpu"``, ``"cuda"`` (every visible GPU), ``"cuda:N"``, or several such names
            (a list, or one string separated by commas).
        trials_per_device: Child trainings at once per device, each in its own worker
            process; ``"auto"``: 1 on CPU, and on GPUs one per CPU core per GPU, at most 8
            (1 when latency is an objective or a budget, since trainings sharing the GPU
            would slow the timed passes). With more than one slot in all, the trials run in
            parallel (``study.optimize(n_jobs=...)``) and the space's classes must be
            importable by the worker processes.
        seed: Seeds the sampler and every child's initialization and batch order.
        sampler_seed: Seeds the sampler instead of ``seed`` (workers sharing a study each
            take their own, so that they do not all propose the same candidates).
        budgets: Largest ``params`` / ``flops`` / ``macs`` / ``latency`` a network may have;
            one over budget is recorded as infeasible (``trial.constraints``) and not
            trained.
        latency_batch_size: Batch size at which latency is timed (on ``device``).
        dedup: A candidate whose architecture (``arch_key``) an earlier trial of the study
            already trained with the same recipe is not trained again: it is pruned with
            user attr ``duplicate_of``, and the earlier result stands. Turn off for noisy
            objectives.
        max_initial_failures: Stop with :class:`optnas.SearchError` when this many first
            trials of the call all fail (a broken space or data, not a bad candidate).
        data_dir: Folder of torchvision's datasets (``"mnist"``, ``"cifar10"``, ...).
        download: Download a torchvision dataset missing from ``data_dir``.
        image_size: Side to which images of a folder dataset are resized.
        val_fraction, test_fraction, split_seed: The data's split (see
            :func:`optnas.data.load`).
        fork: A new study name: continue under it from a copy of the study's trials,
            with this call's definition (a rerun with another definition under the same
            name is refused).
        workers: Processes running trials of the study at once on this machine, each
            like ``optnas worker`` (rebuilding the objective from the definition recorded
            with the study); ``n_trials`` are shared among them. Needs a storage URL that
            processes share (the default SQLite file, ``journal:PATH``, PostgreSQL) and a
            space given by name or import path.
        heartbeat_interval: Seconds between the heartbeats of a running trial on a
            database storage: a trial whose process died is marked failed after twice
            this long without one, and retried with the same parameters.
        artifacts: Where each trial's diagram and the kept weights go (see
            :mod:`optnas.artifacts`): a folder, an Optuna artifact store, ``False`` for
            none, or None: beside an SQLite file (``studies/NAME.artifacts/``), none for
            other storages. A folder is recorded with the study.
        keep_weights: Keep the trained weights of a completed trial that is among this many
            best completed trials when it ends (Pareto rank with several objectives); 0
            keeps none.
        show_progress_bar: Show a progress bar of the trainings.

    Returns:
        The :class:`optuna.Study`, with one trial per candidate.

    Raises:
        ValueError: An unknown name or an invalid value; nothing was created.
        StorageError: The storage cannot be opened or written, or holds a study of the
            same name with another definition (objectives, space, data, recipe) or that
            optnas did not make.
        SearchError: The first ``max_initial_failures`` trials, or all of fewer, failed;
            the error names the first cause.

    Example:
        >>> import optnas
        >>> study = optnas.search("convnet", "digits", ("accuracy", "params"),
        ...                       n_trials=2, epochs=1, storage="sqlite:///:memory:")
        >>> len(study.trials)
        2
    """
    if n_trials == "unlimited":  # A study file's word for None.
        n_trials = None
    call = dict(locals())  # The arguments, as given: recorded as the study's definition.
    # torch is imported here, not at module level, to keep `import optnas` fast.
    from optnas import definition, spaces
    from optnas.data import load
    from optnas.objective import Objective, costs_before_training, recipe
    from optnas.pool import DevicePool, LocalRunner
    from optnas.train import AUGMENTS, OPTIMIZERS

    _check_kinds(objectives=objectives, storage=storage, study_name=study_name, fork=fork,
                 data_dir=data_dir)  # fmt: skip
    _check_seeds(seed=seed, sampler_seed=sampler_seed, split_seed=split_seed)
    objectives = [objectives] if isinstance(objectives, str) else list(objectives)
    directions = resolve_objectives(objectives)
    budgets = _check_budgets(budgets)
    _check_positive(
        n_trials=n_trials,
        timeout=timeout,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        latency_batch_size=latency_batch_size,
        max_initial_failures=max_initial_failures,
        workers=workers,
        heartbeat_interval=heartbeat_interval,
    )
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ValueError(f"workers must be a whole number, but got {workers!r}.")
    _check_whole(keep_weights=keep_weights, precise_bn=precise_bn)
    _check_artifacts(artifacts)
    _check_choice("augment", augment, ("auto", *AUGMENTS))
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), but got {label_smoothing!r}.")
    device_list = resolve_devices(devices)
    timed = "latency" in objectives or "latency" in budgets
    slots = _slots_per_device(trials_per_device, device_list, timed=timed)
    dataset = load(
        data,
        data_dir=data_dir,
        download=download,
        image_size=image_size,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
    )
    if augment not in ("auto", "none") and not dataset.spec.is_image:
        raise ValueError(
            f"augment={augment!r} needs images, but {dataset.name!r} holds samples of shape "
            f"{dataset.spec.input_shape}; use augment='none'."
        )
    space_fn = spaces.get(space, dataset.spec)
    parallel = len(device_list) * slots > 1
    concurrent = parallel or _ONE_OF_WORKERS.get()  # trials sampled while others run

    train_kwargs = {
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "label_smoothing": label_smoothing,
        "augment": dataset.augment if augment == "auto" else augment,
        "autotune": autotune,
        "precise_bn": precise_bn,
    }

    def make_sampler(seed: int | None) -> optuna.samplers.BaseSampler:
        made = create_sampler(
            _screened(sampler, len(objectives)),
            directions=directions,
            seed=seed,
            parallel=concurrent,
            # With several objectives, the key would hide cheaper twins of trained networks
            # (equal keys can differ in parameters: nb201's dead edges still hold weights).
            key=_safe_key(space_fn) if len(objectives) == 1 else None,
            costs=costs_before_training(space_fn, dataset.spec, objectives)
            if len(objectives) > 1
            else None,
        )
        if dedup and split_named(sampler, "sampler")[0] in _BLIND_TO_REPEATS:
            repeats = _repeats(space_fn, dataset.spec, objectives, recipe(epochs, train_kwargs))
            return UnrepeatedSampler(made, repeats, seed=seed)
        return made

    given_seed = seed if sampler_seed is None else sampler_seed
    sampler_obj = make_sampler(given_seed)  # A bad name fails before anything is created.
    pruner_obj = create_pruner(pruner, epochs=epochs, n_objectives=len(objectives))
    name = study_name or "-".join([spaces.name_of(space_fn), dataset.name, *objectives])
    # A fork records its own name: its definition reruns the fork, not its source.
    recorded = definition.from_call(
        call if fork is None else call | {"study_name": fork}, space_fn
    )
    url = _shared_url(storage, name if fork is None else fork, workers)
    if workers > 1:  # Workers rebuild the objective from storage: refuse now if they can't.
        try:
            recorded.search_kwargs()
        except definition.DefinitionError as error:
            raise definition.DefinitionError(
                f"workers={workers}: each worker process rebuilds the search from the study's "
                f"storage, and {error} Give the space by import path "
                "('package.module:function') and the data by name or folder, or use "
                "trials_per_device for several trainings in one process."
            ) from None
    forked = False
    if fork is not None:
        name, storage, forked = _fork(name, fork, storage, metric_names=list(objectives))
    study = open_study(
        name,
        storage,
        directions=directions,
        metric_names=list(objectives),
        sampler=sampler_obj,
        pruner=pruner_obj,
        heartbeat_interval=heartbeat_interval,
        owner_attr=None if forked else definition.DEFINITION_ATTR,  # a fork: its own
    )
    record(study, recorded, replace=forked)
    _record_spec(study, dataset, replace=forked)
    earlier = len(study.get_trials(deepcopy=False))
    if given_seed is not None and earlier:  # Resumed: not the first run's proposals again.
        study.sampler = make_sampler((given_seed * 1_000_003 + earlier) % 2**31)
    store = _artifact_store(study, artifacts, storage, forked=forked)
    if workers > 1:
        from optnas.workers import run_workers

        # "auto" on the whole machine, shared out: each worker sees only its cores.
        started = workers if n_trials is None else min(workers, n_trials)
        per_worker = max(1, slots // started) if trials_per_device == "auto" else None
        run_workers(url, name, workers, n_trials=n_trials, timeout=timeout,
                    trials_per_device=per_worker, show_progress_bar=show_progress_bar)  # fmt: skip
        return open_study(name, url)
    if parallel:
        runner = DevicePool(device_list, slots, dataset.train, dataset.val)
    else:
        runner = LocalRunner(device_list[0], dataset.train, dataset.val)
    objective = Objective(
        space_fn,
        dataset,
        objectives,
        epochs=epochs,
        runner=runner,
        budgets=budgets,
        seed=seed,
        train_kwargs=train_kwargs,
        latency_batch_size=latency_batch_size,
        dedup=dedup,
        artifact_store=store,
        keep_weights=keep_weights,
    )
    guard = _FailureGuard(max_initial_failures)
    with interrupts_once():  # A second Ctrl-C while ends are recorded: said, ignored.
        try:
            unit = progress_unit(objectives)
            with _TrainingCounter(n_trials, show_progress_bar, unit) as counter:
                _optimize_interruptibly(study, objective, counter, guard, timeout=timeout)
        except KeyboardInterrupt as stop:
            objective.interrupt(stop)  # No more waiting on a pool process's epoch.
            _queue_again(study, objective.interrupted_trials, stop)
            raise
        finally:
            runner.close()
    _raise_if_unusable(objective)  # The more specific cause first.
    guard.raise_if_all_failed()
    return study


def _raise_if_unusable(objective: Objective) -> None:
    """A CUDA error that broke this process's CUDA context stopped the search: say so."""
    unusable = objective.unusable
    if unusable is not None:
        raise SearchError(
            f"A trial's CUDA error left this process unable to use the GPU "
            f"({type(unusable).__name__}: {unusable}), so the search stopped. Run the same "
            "command again: the study resumes. With trials_per_device > 1 the trials run in "
            "worker processes, and a broken one is replaced without stopping."
        )


def record(study: optuna.Study, definition: Definition, *, replace: bool = False) -> None:
    """Record ``definition`` with ``study``, refusing one that changes what the study is.

    Raises:
        StorageError: ``study`` holds another definition (keys other than how-to-run
            ones such as ``n_trials`` differ) and ``replace`` is off.

    Example:
        >>> from optnas.definition import DEFAULT_FILE, load
        >>> study = optuna.create_study()
        >>> record(study, load(DEFAULT_FILE))
        >>> record(study, load(DEFAULT_FILE).replace({"n_trials": 3}))  # a rerun: fine
    """
    from optnas.definition import DEFINITION_ATTR, Definition

    recorded = study.user_attrs.get(DEFINITION_ATTR)
    if recorded is not None and not replace:
        before = Definition.from_study(study)
        upgraded = before.with_hashes_of(definition)
        changed = upgraded.differences(definition)
        if upgraded != before and not changed:  # Recorded before names carried hashes.
            study.set_user_attr(DEFINITION_ATTR, upgraded.to_json())
        if changed:
            url = definition["storage"]
            where = (
                f"--storage {shlex.quote(_hide_password(url))} " if isinstance(url, str) else ""
            )
            show = f"optnas show {where}--study-name {shlex.quote(study.study_name)} --definition"
            raise StorageError(
                f"Study {study.study_name!r} was created with another definition; this run "
                f"would change {', '.join(changed)}. Rerun it as it was (`{show}` prints "
                "its definition), choose another study name, or fork it: fork='NEW' (CLI: "
                "--fork NEW) continues under the name NEW from a copy of its trials, with "
                "the new definition."
            )
        return
    study.set_user_attr(DEFINITION_ATTR, definition.to_json())


_ONE_OF_WORKERS = contextvars.ContextVar("optnas_one_of_workers", default=False)
"""True within :func:`optnas.workers.work`: this search is one of several processes
sharing its study, whose trials run at the same time (TPE's constant liar)."""

SPEC_ATTR = "optnas.spec"
"""Study user attr: the data's input shape and classes, so that a trial's network can be
rebuilt without loading the data (see :mod:`optnas.export`)."""
INPUTS_ATTR = "optnas.inputs"
"""Study user attr: how the search's data was standardized (``mean``, ``std``) and the
classes' original labels (``classes``), for an exported network to take inputs as read."""


def _record_spec(study: optuna.Study, dataset: Dataset, *, replace: bool) -> None:
    """Record the data's spec and its standardization; StorageError where the study was
    searched on data of another shape or number of classes (a folder whose classes
    changed, say), unless ``replace`` (a fork just made, with a definition of its own)."""
    spec = {"input_shape": list(dataset.spec.input_shape), "num_classes": dataset.spec.num_classes}
    recorded = study.user_attrs.get(SPEC_ATTR)
    if recorded is None or (replace and recorded != spec):
        study.set_user_attr(SPEC_ATTR, spec)
    elif recorded != spec:
        raise StorageError(
            f"Study {study.study_name!r} was searched on samples of shape "
            f"{tuple(recorded['input_shape'])} in {recorded['num_classes']} classes, but "
            f"{dataset.name!r} now holds samples of shape {dataset.spec.input_shape} in "
            f"{dataset.spec.num_classes} classes; its trials' networks would not fit these. "
            "Choose another study name."
        )
    inputs = {
        "mean": None if dataset.mean is None else list(dataset.mean),
        "std": None if dataset.std is None else list(dataset.std),
        "classes": None if dataset.classes is None else list(dataset.classes),
    }
    if long_user_attr(study.user_attrs, INPUTS_ATTR) != inputs:
        set_long_user_attr(study, INPUTS_ATTR, inputs)  # thousands of features: long


def _artifact_store(study: optuna.Study, artifacts: Any, storage: Any, *, forked: bool) -> Any:
    """The artifact store a search uploads to (see :mod:`optnas.artifacts`), or None.

    A fork just copied holds its source's folder; where the fork gets a store of its own,
    the artifacts of the copied trials are copied into it, so that they stay readable.
    """
    from optnas import artifacts as store

    source = study.user_attrs.get(store.FOLDER_ATTR) if forked else None
    if artifacts is False:
        return None
    if artifacts is None:
        folder = store.default_folder(storage or default_storage(study.study_name))
        resolved = None if folder is None else store.create_store(study, folder)
    elif isinstance(artifacts, (str, os.PathLike)):
        resolved = store.create_store(study, artifacts)
    else:
        resolved = artifacts
    if source and resolved is not None and study.user_attrs.get(store.FOLDER_ATTR) != source:
        store.copy_from(study, source, resolved)
    return resolved


def _check_artifacts(artifacts: Any) -> None:
    if artifacts is None or artifacts is False:
        return
    if isinstance(artifacts, (str, os.PathLike)):
        folder = Path(artifacts)
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            raise ValueError(
                f"artifacts must be a folder, but {str(existing)!r} is a file, so "
                f"{str(folder)!r} cannot be one."
            )
        return
    if not all(callable(getattr(artifacts, m, None)) for m in ("write", "open_reader")):
        raise ValueError(
            "artifacts must be a folder, an Optuna artifact store, False or None, but got "
            f"{type(artifacts).__name__}."
        )


def _queue_again(study: optuna.Study, numbers: Sequence[int], stop: KeyboardInterrupt) -> None:
    """Queue the trials an interruption cut short again (Optuna's retry, at most
    ``MAX_RETRIES`` times along one), so that the study, resumed, trains the candidates
    its sampler chose first rather than lose them."""
    from optnas.errors import interruption
    from optnas.storage import retry

    if not numbers:
        return
    trials = study.get_trials(deepcopy=False)
    for number in numbers:
        trial = trials[number]
        if trial.state == optuna.trial.TrialState.FAIL and trial.params:  # a candidate
            retry(study, trial, f"interrupted ({interruption(stop)})")


def _optimize_interruptibly(
    study: optuna.Study,
    objective: Objective,
    counter: _TrainingCounter,
    guard: _FailureGuard,
    *,
    timeout: float | None,
) -> None:
    """:func:`_optimize` with a slot per pool process; with several, Optuna's threads run
    them, in a thread of their own, while this one waits for Ctrl-C or SIGTERM: Optuna
    would let the trainings under way finish before it raised the interruption."""
    n_jobs = objective.runner.size
    if n_jobs == 1 or threading.current_thread() is not threading.main_thread():
        _optimize(study, objective, counter, guard, timeout=timeout, n_jobs=n_jobs)
        return
    failed: list[BaseException] = []
    done = threading.Event()  # Not Thread.join: an interrupted join can leave it believing
    # the thread ended (CPython 3.11).

    def run() -> None:
        try:
            _optimize(study, objective, counter, guard, timeout=timeout, n_jobs=n_jobs)
        except BaseException as error:  # Raised again in the main thread.
            failed.append(error)
        finally:
            done.set()

    threading.Thread(target=run, name="optnas-optimize").start()
    try:
        while not done.wait(0.1):  # In short waits: a signal's handler runs between them.
            pass
    except KeyboardInterrupt as stop:
        objective.interrupt(stop)  # Its trials end now, recorded as interrupted.
        with interrupts_as_a_flag():  # Another Ctrl-C must not cut their grace short.
            done.wait(GRACE_SECONDS)
        raise
    if failed:
        raise failed[0]


def _optimize(
    study: optuna.Study,
    objective: Objective,
    counter: _TrainingCounter,
    guard: _FailureGuard,
    *,
    timeout: float | None,
    n_jobs: int,
) -> None:
    """``study.optimize`` in rounds until ``counter`` has its trainings.

    A round of ``n`` parallel trials stops starting new ones once the trainings done and
    the ``n - 1`` possibly under way reach the target, so it never trains more than asked;
    when some of those turn out untrained (duplicates, over budget), another round makes up
    the difference. A round that something else stopped (a sampler whose grid is done, a
    user's ``study.stop()``) ends the search.
    """
    start = time.monotonic()
    # An interruption Optuna's threads swallowed (one raised after its last submission)
    # must not start another round either.
    while not (guard.tripped or counter.exhausted or objective.unusable or objective.interrupted):
        remaining = counter.remaining()
        left = None if timeout is None else timeout - (time.monotonic() - start)
        if remaining == 0 or (left is not None and left <= 0):
            return
        jobs = n_jobs if remaining is None else min(n_jobs, remaining)
        counter.in_flight, counter.stopped = jobs - 1, False
        study.optimize(
            objective, timeout=left, n_jobs=jobs, catch=(Exception,), callbacks=[guard, counter]
        )
        if remaining is None or not counter.stopped:
            return


def resolve_objectives(objectives: Sequence[str]) -> list[str]:
    """Directions of ``objectives``; ValueError on an unknown or repeated name.

    Example:
        >>> resolve_objectives(["accuracy", "params"])
        ['maximize', 'minimize']
    """
    if not objectives:
        raise ValueError(f"Give at least one objective; valid names: {', '.join(OBJECTIVES)}.")
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown:
        raise ValueError(
            f"Unknown objective {unknown[0]!r}; valid names: {', '.join(OBJECTIVES)}."
        )
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"Each objective may appear once, but got {list(objectives)}.")
    return [OBJECTIVES[o] for o in objectives]


N_EXACT = 32
"""Candidates per trial whose costs the default sampler counts on the built network."""


def _screened(sampler: Any, n_objectives: int) -> Any:
    """``auto`` told to count the exact costs of its ``N_EXACT`` best candidates only:
    building every one of its thousand candidates would cost seconds per trial."""
    name, options = split_named(sampler, "sampler")
    if name != "auto" or n_objectives == 1:
        return sampler
    return {"name": "auto", "n_exact": N_EXACT, **options}


_BLIND_TO_REPEATS = ("gp", "nsga2")
"""Samplers that choose all of a trial's parameters at once and learn from completed
trials only: with dedup, a network they propose again is pruned untrained, they never
learn of it and propose it on (see :class:`optnas.samplers.UnrepeatedSampler`). (The
controller chooses parameter by parameter: it cannot be kept from a repeat this way.)"""


def _repeats(
    space: Callable[..., Any],
    spec: DataSpec,
    objectives: Sequence[str],
    wanted: Mapping[str, Any],
) -> Callable[[optuna.Study, Mapping[str, Any]], bool]:
    """``repeats(study, params)``: whether a trial of ``study`` already holds ``params``,
    or the same network by the space's key (with several objectives, at the same counted
    costs too: dedup trains a cheaper twin); trials trained with another recipe than
    ``wanted`` (a fork's copied ones) do not count: dedup would train their networks."""
    from optnas.objective import costs_before_training, recipe_of

    key = _safe_key(space)
    counted = costs_before_training(space, spec, objectives) if len(objectives) > 1 else None

    def repeats(study: optuna.Study, params: Mapping[str, Any]) -> bool:
        held = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.params and recipe_of(t) in (None, dict(wanted))
        ]
        if any(t.params == dict(params) for t in held):
            return True
        k = key(params)
        twins = [t for t in held if k is not None and t.user_attrs.get("arch_key") == k]
        if not twins or counted is None:
            return bool(twins)
        costs = counted(params)
        return any(all(t.user_attrs.get(n) == v for n, v in costs.items()) for t in twins)

    return repeats


def _safe_key(space: Callable[..., Any]) -> Callable[[Mapping[str, Any]], Any]:
    """The space's key of an architecture, or None where ``params`` do not make one whole
    (a sampler's candidates hold only the choices every trial shares)."""
    from optnas import spaces

    def key(params: Mapping[str, Any]) -> Any:
        try:
            return spaces.key(space, params)
        except (KeyError, ValueError, TypeError, IndexError):
            return None

    return key


def create_pruner(
    pruner: str | Mapping[str, Any] | optuna.pruners.BasePruner,
    *,
    epochs: int,
    n_objectives: int = 1,
) -> optuna.pruners.BasePruner:
    """A pruner for a name in :data:`PRUNERS` or an import path ``"package.module:Class"``
    (either alone or as a mapping with options: ``{"name": "median",
    "n_startup_trials": 10}``, keywords of its constructor), or ``pruner`` itself.

    Raises:
        ValueError: An unknown name or option, or a pruner that cannot judge
            ``n_objectives``.

    Example:
        >>> type(create_pruner("hyperband", epochs=10)).__name__
        'HyperbandPruner'
        >>> type(create_pruner("auto", epochs=10, n_objectives=2)).__name__
        'ParetoPruner'
    """
    from optnas.pruners import SINGLE_OBJECTIVE_PRUNERS

    pruner, options = split_named(pruner, "pruner")
    if is_import_path(pruner) and not options:
        imported = import_object(pruner, "pruner")
        pruner = imported if isinstance(imported, optuna.pruners.BasePruner) else pruner
    if pruner == "auto":
        pruner = "median" if n_objectives == 1 else "pareto"
    if isinstance(pruner, optuna.pruners.BasePruner):
        if options:
            raise ValueError("A pruner object takes no options; configure it when creating it.")
        resolved = pruner
    else:
        factory, defaults = _pruner_factory(pruner, epochs)
        resolved = call_with_options(factory, defaults | options, what=f"pruner {pruner!r}")
        if not isinstance(resolved, optuna.pruners.BasePruner):
            raise ValueError(
                f"The pruner {pruner!r} made a {type(resolved).__name__}, not a pruner."
            )
    if n_objectives > 1 and isinstance(resolved, SINGLE_OBJECTIVE_PRUNERS):
        raise ValueError(
            f"The pruner {type(resolved).__name__} works with one objective only, but this "
            f"study has {n_objectives}; use 'pareto', 'pareto-halving' or 'none'."
        )
    return resolved


def _pruner_factory(name: str, epochs: int) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The constructor of the pruner ``name`` and optnas's defaults for it."""
    from optnas.pruners import ParetoHalvingPruner, ParetoPruner

    if is_import_path(name):
        return import_object(name, "pruner"), {}
    factories: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
        "median": (optuna.pruners.MedianPruner, {"n_startup_trials": 5, "n_warmup_steps": 1}),
        "hyperband": (optuna.pruners.HyperbandPruner, {"min_resource": 1, "max_resource": epochs}),
        "sha": (optuna.pruners.SuccessiveHalvingPruner, {}),
        # Early epochs say little here (one-cycle warm-up, batch-norm statistics settling).
        "pareto": (ParetoPruner, {"n_warmup_steps": max(1, epochs // 2)}),
        "pareto-halving": (ParetoHalvingPruner, {}),
        "none": (optuna.pruners.NopPruner, {}),
    }
    if name not in factories:
        raise ValueError(
            f"Unknown pruner {name!r}; valid names: {', '.join(PRUNERS)}, or an import path "
            "'package.module:PrunerClass'."
        )
    return factories[name]


def resolve_devices(devices: str | Sequence[str]) -> list[Any]:
    """``torch.device``s for ``"auto"``, ``"cpu"``, ``"cuda"`` (every visible GPU),
    ``"cuda:N"``, or several names (a list or a comma-separated string).

    Example:
        >>> resolve_devices("cpu")
        [device(type='cpu')]
    """
    import torch

    names = devices.split(",") if isinstance(devices, str) else list(devices)
    names = [str(n).strip() for n in names]
    if not names or not all(names):
        raise ValueError(f"No device named in devices={devices!r}.")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    resolved: list[Any] = []
    for name in names:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
            raise ValueError(
                f"Unknown device {name!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or a list of them."
            )
        if name == "auto":
            name = "cuda" if visible else "cpu"
        if name.startswith("cuda") and not visible:
            raise ValueError(f"Device {name!r} was asked for, but CUDA is not available.")
        if name == "cuda":
            resolved += [torch.device("cuda", i) for i in range(visible)]
        elif name == "cpu":
            resolved.append(torch.device("cpu"))
        elif int(name[5:]) >= visible:
            raise ValueError(
                f"Device {name!r} was asked for, but only {visible} CUDA device(s) are visible."
            )
        else:
            resolved.append(torch.device(name))
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"Each device may appear once, but got {[str(d) for d in resolved]}.")
    return resolved


def _slots_per_device(trials_per_device: int | str, devices: Sequence[Any], *, timed: bool) -> int:
    from optnas.pool import default_trials_per_device

    if trials_per_device == "auto":
        return 1 if timed else default_trials_per_device(devices)
    if isinstance(trials_per_device, bool) or not isinstance(trials_per_device, int):
        raise ValueError(
            f"trials_per_device must be a positive integer or 'auto', but got "
            f"{trials_per_device!r}."
        )
    if trials_per_device < 1:
        raise ValueError(f"trials_per_device must be positive, but got {trials_per_device}.")
    if timed and trials_per_device > 1 and any(d.type == "cuda" for d in devices):
        warnings.warn(
            f"Latency is timed while {trials_per_device} trainings share each GPU, so it "
            "includes their load; use trials_per_device=1 for clean latencies.",
            stacklevel=3,
        )
    return trials_per_device


def _check_choice(name: str, value: object, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {name} {value!r}; valid names: {', '.join(valid)}.")


def _check_budgets(budgets: Mapping[str, float] | None) -> dict[str, float]:
    budgets = dict(budgets or {})
    for key, value in budgets.items():
        if key not in COSTS:
            raise ValueError(f"Unknown budget {key!r}; valid names: {', '.join(COSTS)}.")
        if not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"Budget {key!r} must be a positive number, but got {value!r}.")
    return budgets


def _check_whole(**values: Any) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a whole number >= 0, but got {value!r}.")


def _check_positive(**values: float | None) -> None:
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, but got {value!r}.")
        if not value > 0:
            raise ValueError(f"{key} must be positive, but got {value!r}.")


def _check_seeds(**values: int | None) -> None:
    for key, value in values.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32
        ):
            raise ValueError(
                f"{key} must be a whole number from 0 to 2**32 - 1, but got {value!r}."
            )


def _check_kinds(
    *, objectives: Any, storage: Any, study_name: Any, fork: Any, data_dir: Any
) -> None:
    """The arguments whose wrong type would otherwise surface as a bare TypeError."""
    names = [objectives] if isinstance(objectives, str) else objectives
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"objectives must be a name or a list of names among {', '.join(OBJECTIVES)}, "
            f"but got {objectives!r}."
        )
    if storage is not None and not isinstance(storage, (str, optuna.storages.BaseStorage)):
        raise ValueError(
            f"storage must be a database URL, an Optuna storage or None, but got {storage!r}."
        )
    for key, value in (("study_name", study_name), ("fork", fork)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{key} must be a non-empty string or None, but got {value!r}.")
    if not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(f"data_dir must be a folder (a str or path), but got {data_dir!r}.")


class _FailureGuard:
    """Stops a study whose first trials in this call all fail, remembering the cause."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.failed: list[optuna.trial.FrozenTrial] = []
        self.any_ok = False
        self._lock = threading.Lock()

    @property
    def tripped(self) -> bool:
        return not self.any_ok and len(self.failed) >= self.limit

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with self._lock:
            if self.any_ok:
                return
            if trial.state != optuna.trial.TrialState.FAIL:
                self.any_ok = True
                return
            self.failed.append(trial)
            if self.tripped:
                study.stop()

    def raise_if_all_failed(self) -> None:
        """SearchError when every trial of this call failed: the first ``limit`` (the
        search stopped), or all of fewer."""
        if self.any_ok or not self.failed:
            return
        first = min(self.failed, key=lambda t: t.number)
        reason = first.user_attrs.get("fail_reason", "no reason recorded")
        what = (
            f"The first {len(self.failed)} trials all failed, so the search stopped."
            if self.tripped
            else f"All {len(self.failed)} trials of this search failed."
            if len(self.failed) > 1
            else "The search's only trial failed."
        )
        raise SearchError(f"{what} Trial {first.number} failed with {reason}")


def progress_unit(objectives: Sequence[str]) -> str:
    """What a progress bar counts: candidates trained, or measured where no objective
    needs training (a survey of a space's costs).

    Example:
        >>> progress_unit(["accuracy", "params"]), progress_unit(["params", "latency"])
        ('trained', 'measured')
    """
    return "trained" if "accuracy" in objectives else "measured"


class _TrainingCounter:
    """Stops the study once ``n_trials`` candidates were trained (or failed trying).

    Candidates over budget or already trained cost a build and a measurement, not a
    training: they are recorded but not counted. After ``MAX_UNTRAINED_IN_A_ROW`` of them
    in a row the space within budget looks exhausted and the search stops. With trials
    running in parallel, ``in_flight`` trials may still be training when one finishes: the
    study stops starting trials once those could complete the target.
    """

    MAX_UNTRAINED_IN_A_ROW = 50

    def __init__(self, n_trials: int | None, show_progress_bar: bool, unit: str) -> None:
        from tqdm.auto import tqdm

        self.target = n_trials
        self.trained = 0
        self.in_flight = 0
        self.untrained_in_a_row = 0
        self.least_over: dict[str, float] = {}  # budget -> least excess of this run
        self.exhausted = False
        self.stopped = False  # this round, by reaching the target
        self.bar = tqdm(total=n_trials, unit=unit) if show_progress_bar else None
        self._lock = threading.Lock()

    def __enter__(self) -> _TrainingCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def _exhausted_message(self) -> str:
        message = (
            f"Stopped after {self.untrained_in_a_row} candidates in a row that were over "
            "budget or already trained: the space within budget looks exhausted."
        )
        if self.least_over:
            from optnas.objective import _plain

            least = ", ".join(f"{k} by {_plain(v)}" for k, v in sorted(self.least_over.items()))
            message += f" The closest of them exceeded the budgets: {least}."
        return message

    def remaining(self) -> int | None:
        """Trainings still to run, or None without a target."""
        return None if self.target is None else max(self.target - self.trained, 0)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with self._lock:
            if _untrained(trial):
                self.untrained_in_a_row += 1
                for name, excess in (trial.constraints or {}).items():
                    if excess > 0:
                        self.least_over[name] = min(excess, self.least_over.get(name, excess))
                if self.untrained_in_a_row >= self.MAX_UNTRAINED_IN_A_ROW:
                    if self.bar is not None:
                        self.bar.clear()  # The warning on a line of its own.
                    optuna.logging.get_logger("optnas").warning(self._exhausted_message())
                    self.exhausted = True
                    study.stop()
            else:
                self.untrained_in_a_row = 0
                self.least_over = {}
                self.trained += 1
                if self.bar is not None:
                    self.bar.update()
            if self.target is not None and self.trained + self.in_flight >= self.target:
                self.stopped = True
                study.stop()


def _untrained(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` was skipped before training: over budget, or a duplicate."""
    # The objective records train_seconds as soon as a training starts (0 for a duplicate).
    return trial.state == optuna.trial.TrialState.PRUNED and not trial.user_attrs.get(
        "train_seconds"
    )
