"""A sampler that models accuracy alone, because an architecture's costs are known untrained."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from threadpoolctl import threadpool_limits

from optnas.samplers._base import choices, pareto_ranks

__all__ = ["CostAwareSampler"]

CostFn = Callable[[Mapping[str, Any]], Mapping[str, float]]
KeyFn = Callable[[Mapping[str, Any]], Hashable]

# An integer choice with at most this many values is modelled like a categorical one.
_MAX_INT_CHOICES = 32
# Observations the Gaussian process conditions on, at most (see _kept).
_MAX_POINTS = 300
# Choices in which an exploring trial's architecture differs from the best one, at least.
FAR = 3
# Log noise variance of the standardized targets where it is not fitted.
_LOG_NOISE = float(np.log(1e-2))


class CostAwareSampler(optuna.samplers.BaseSampler):
    """Bayesian optimization of one objective (accuracy) with the others known beforehand.

    In a NAS study every objective but accuracy (parameters, FLOPs, latency) is a cost that
    can be computed from the architecture without training it. This sampler models only the
    accuracy: a Gaussian process on the architecture's choices (an exponential kernel on
    their Hamming distance, one length scale per choice fitted by marginal likelihood, plus
    the log-costs as inputs when ``costs`` gives them) predicts it for candidate
    architectures. A candidate can join the Pareto front only by being more accurate than
    every trained architecture that costs no more in every cost; the next trial is the
    candidate with the largest expected improvement over that bar. With one objective the
    bar is the best accuracy so far (plain expected improvement).

    The costs of a candidate come from ``costs`` when given; otherwise they are predicted
    by a ridge regression of the log-costs the study has recorded (as objective values, or
    as user attributes of the same name, which optnas sets on every trial, pruned or not).

    Candidates are ``n_candidates`` random architectures and every one-choice change of the
    current front (and two-choice changes of a front of one or two); architectures the
    study already holds, or that ``key`` says are the same network as one it holds, are
    never proposed. The model needs a flat space: every parameter of every trial
    categorical (or a small integer) and present in every trial, as in NAS-Bench-201's
    cell. Until ``n_startup_trials`` trials completed, and for every parameter of a space
    with conditional or continuous choices, ``independent_sampler`` decides.

    Args:
        costs: ``costs(params) -> {name: value}``: known costs of an architecture. Values
            named like the study's cost objectives (``study.metric_names``) are used as
            those objectives; all of them are inputs of the model. Called once per
            distinct candidate (cached).
        key: ``key(params) -> hashable``: architectures with equal keys are the same
            network (e.g. :func:`optnas.spaces.key`); candidates equal to a trial already
            in the study are skipped. Return ``None`` when a key cannot be computed.
        objective: The metric name of the modelled objective; by default ``"accuracy"``
            if the study names its metrics so, else the first objective.
        n_startup_trials: Completed trials before the model is used.
        n_candidates: Random candidates scored per trial.
        length_scale: Starting point (and centre of a weak prior) of each choice's length
            scale, in Hamming distance.
        n_exact: Call ``costs`` for this many candidates per trial only, for costs slow to
            compute (building the network): the candidates are first scored with costs
            predicted from the study's records, and the ``n_exact`` best are scored again
            with their exact costs. None: ``costs`` for every candidate (and, with one
            objective, as inputs of the model).
        cost_attrs: With one objective and no ``costs``: user attributes that trials
            record before training (optnas records ``params``, ``flops``, ``macs`` and
            ``latency`` on every trial) taken as inputs of the model, the recorded value
            for trained architectures and a ridge regression of those for candidates.
        margin: With one objective, a candidate's expected improvement counts only gains
            of more than ``margin`` of its posterior standard deviation: a larger margin
            explores more.
        explore_every: With one objective, every ``explore_every``-th modelled trial
            proposes an architecture that differs from the best one in at least 3
            choices (where the candidates hold one), so that a search does not stay
            around its first good architecture (None: never).
        seed: Seed of the candidates and of the default independent sampler.
        independent_sampler: Sampler of the startup trials and of other parameters
            (default: ``RandomSampler(seed)``).

    Example:
        >>> import optuna
        >>> def objective(trial):
        ...     a = trial.suggest_categorical("a", [0, 1, 2, 3])
        ...     b = trial.suggest_categorical("b", [0, 1, 2, 3])
        ...     return a + b
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> sampler = CostAwareSampler(n_startup_trials=4, seed=0)
        >>> study = optuna.create_study(direction="maximize", sampler=sampler)
        >>> study.optimize(objective, n_trials=12)
        >>> study.best_value
        6.0
    """

    def __init__(
        self,
        *,
        costs: CostFn | None = None,
        key: KeyFn | None = None,
        objective: str | None = None,
        n_startup_trials: int = 10,
        n_candidates: int = 1000,
        length_scale: float = 3.0,
        n_exact: int | None = None,
        cost_attrs: Sequence[str] = ("params",),
        margin: float = 0.5,
        explore_every: int | None = 4,
        seed: int | None = None,
        independent_sampler: optuna.samplers.BaseSampler | None = None,
    ) -> None:
        counts = {"n_startup_trials": n_startup_trials, "n_candidates": n_candidates}
        for name, value in (("n_exact", n_exact), ("explore_every", explore_every)):
            if value is not None:
                counts[name] = value
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, but got {value!r}.")
        if not length_scale > 0:
            raise ValueError(f"length_scale must be positive, but got {length_scale!r}.")
        if not 0 <= margin < np.inf:
            raise ValueError(f"margin must be a finite number >= 0, but got {margin!r}.")
        self.costs = costs
        self.key = key
        self.objective = objective
        self.n_startup_trials = n_startup_trials
        self.n_candidates = n_candidates
        self.length_scale = length_scale
        self.n_exact = n_exact
        self.cost_attrs = tuple(cost_attrs)
        self.margin = margin
        self.explore_every = explore_every
        self._rng = np.random.default_rng(seed)
        self._independent = independent_sampler or optuna.samplers.RandomSampler(seed=seed)
        self._space = optuna.search_space.IntersectionSearchSpace()
        self._cost_cache: dict[bytes, dict[str, float]] = {}
        self._key_cache: dict[bytes, Hashable] = {}
        self._theta: np.ndarray | None = None
        self._fitted_at = 0

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._independent.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        space = self._space.calculate(study)
        return {n: d for n, d in space.items() if choices(d, _MAX_INT_CHOICES) is not None}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if all(n in t.params for n in search_space)
        ]
        if len(done) < self.n_startup_trials or _conditional(done, search_space):
            return {}
        arch = _Encoding(search_space)
        target, cost_index = self._roles(study)
        loss = np.array([_loss(t, target, study.directions) for t in done])
        trained = arch.encode([t.params for t in done])
        trained_costs = np.array([[_loss(t, i, study.directions) for i in cost_index]
                                  for t in done]).reshape(len(done), len(cost_index))  # fmt: skip
        candidates = self._candidates(study, arch, trained, loss, trained_costs)
        candidates = candidates[_feasible(study, arch, candidates)]
        if not cost_index and self.explore_every and len(done) % self.explore_every == 0:
            candidates = _far(candidates, trained[int(np.argmin(loss))])
        if len(candidates) == 0:
            return {}
        screen = self.n_exact is not None and self.costs is not None
        costs = self._candidate_costs(study, arch, cost_index, candidates, exact=not screen)
        bar = _bar(costs, trained_costs, loss)
        observed, observed_loss = _kept(*_with_pruned(study, arch, target, trained, loss))
        inputs: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        if not cost_index:
            observed_loss, bar = _warp(observed_loss, bar)
            inputs = self._cost_inputs(study, arch, observed, candidates)
        # One BLAS thread: these matrices are small, and a thread pool contending with
        # training (or other processes) for the cores made a 300-point Cholesky 100x slower.
        with threadpool_limits(limits=1):
            mean, std = self._predict(
                arch, (observed, inputs[0]), observed_loss, (candidates, inputs[1]),
                adaptive=not cost_index,
            )  # fmt: skip
        gain = _expected_improvement(bar, mean, std, 0.0 if cost_index else self.margin)
        # Trials being sampled now elsewhere (other workers, pool slots) saw this history
        # too and chose its best candidates: take the next one, not the same.
        rank = _in_flight(study, trial, search_space)
        if screen and cost_index:
            # Costs predicted from the records chose the most promising; their exact costs
            # (a build and a count each) decide among those.
            top = np.argsort(-gain)[: self.n_exact + rank]
            exact = self._candidate_costs(study, arch, cost_index, candidates[top], exact=True,
                                          predicted=costs[top])  # fmt: skip
            top_gain = _expected_improvement(_bar(exact, trained_costs, loss), mean[top], std[top])
            return arch.decode(candidates[top[_ranked(top_gain, rank)]])
        return arch.decode(candidates[_ranked(gain, rank)])

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._independent.after_trial(study, trial, state, values)

    def _roles(self, study: optuna.Study) -> tuple[int, list[int]]:
        """The modelled objective's index and the cost objectives' indices."""
        names = study.metric_names or []
        wanted = self.objective or ("accuracy" if "accuracy" in names else None)
        if wanted is not None and wanted not in names:
            raise ValueError(f"No objective named {wanted!r}; the study's are {names}.")
        target = names.index(wanted) if wanted is not None else 0
        others = [i for i in range(len(study.directions)) if i != target]
        if others and self.costs is None and not study.metric_names:
            raise ValueError(
                f"CostAwareSampler needs costs=... or the study's metric names "
                f"(study.set_metric_names) to know the costs of untrained candidates in a "
                f"study with {len(study.directions)} objectives."
            )
        return target, others

    def _known_costs(self, arch: _Encoding, row: np.ndarray) -> dict[str, float]:
        key = row.tobytes()
        if key not in self._cost_cache:
            self._cost_cache[key] = dict(self.costs(arch.decode(row)))  # type: ignore[misc]
        return self._cost_cache[key]

    def _key(self, arch: _Encoding, row: np.ndarray) -> Hashable:
        index = row.tobytes()
        if index not in self._key_cache:
            self._key_cache[index] = self.key(arch.decode(row))  # type: ignore[misc]
        return self._key_cache[index]

    def _candidates(
        self,
        study: optuna.Study,
        arch: _Encoding,
        trained: np.ndarray,
        loss: np.ndarray,
        trained_costs: np.ndarray,
    ) -> np.ndarray:
        sizes = arch.sizes
        pool = (self._rng.random((self.n_candidates, len(sizes))) * sizes).astype(int)
        front = trained[pareto_ranks(np.column_stack([loss, trained_costs])) == 0]
        near = _neighbors(front, sizes)
        if len(front) <= 2:
            # One step from a lone incumbent is often a dead end; two steps (a few hundred
            # networks) usually are not.
            near = np.concatenate([near, _neighbors(near, sizes)])
        held = arch.encode(
            [t.params for t in study.get_trials(deepcopy=False) if arch.covers(t.params)]
        )
        seen = {row.tobytes() for row in held}
        unique = np.unique(np.concatenate([pool, near]), axis=0)
        unique = unique[[row.tobytes() not in seen for row in unique]]
        if self.key is None:
            return unique
        taken = {self._key(arch, row) for row in held} - {None}
        keep = []
        for j, row in enumerate(unique):
            k = self._key(arch, row)
            if k is None or k not in taken:
                keep.append(j)
                taken.add(k)
        return unique[keep]

    def _candidate_costs(
        self,
        study: optuna.Study,
        arch: _Encoding,
        index: list[int],
        candidates: np.ndarray,
        *,
        exact: bool,
        predicted: np.ndarray | None = None,
    ) -> np.ndarray:
        """The candidates' cost objectives as losses: from ``costs`` when ``exact`` (a cost
        it does not give keeps its ``predicted`` value), else predicted from the records."""
        if not index:
            return np.zeros((len(candidates), 0))
        metric = study.metric_names or [str(i) for i in range(len(study.directions))]
        signs = np.array([1.0 if study.directions[i] == StudyDirection.MINIMIZE else -1.0
                          for i in index])  # fmt: skip
        names = [metric[i] for i in index]
        if not (exact and self.costs is not None):
            return _learned_costs(study, arch, names, candidates) * signs
        known = [self._known_costs(arch, row) for row in candidates]
        out = np.array([[c.get(n, np.nan) for n in names] for c in known], dtype=float) * signs
        if predicted is not None:
            out = np.where(np.isnan(out), predicted, out)
        return out

    def _predict(
        self,
        arch: _Encoding,
        observed: tuple[np.ndarray, np.ndarray | None],
        y: np.ndarray,
        candidates: tuple[np.ndarray, np.ndarray | None],
        *,
        adaptive: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the loss of ``candidates``; each of
        ``observed`` and ``candidates`` is (choice rows, cost inputs or None).

        ``adaptive`` (one objective): one length scale per choice and cost input, fitted
        by marginal likelihood. Otherwise (a Pareto front) every choice gets
        ``length_scale``: on NAS-Bench-201 the front's hypervolume was 0.946 without fitted
        scales and cost inputs (20 seeds), 0.926 with them (and a key), while they raised
        the single-objective result.
        """
        from scipy.linalg import cho_solve, solve_triangular

        mu, sd = y.mean(), y.std() + 1e-9
        z = (y - mu) / sd
        if adaptive:
            theta = self._hyperparameters(observed, z)
        else:
            inputs = observed[0].shape[1] + (0 if observed[1] is None else observed[1].shape[1])
            theta = np.append(np.full(inputs, -np.log(self.length_scale)), _LOG_NOISE)
        weights, noise = np.exp(theta[:-1]), np.exp(theta[-1])
        k = np.exp(-_weighted_distances(observed, observed, weights, arch.sizes))
        k += (noise + 1e-6) * np.eye(len(z))
        chol = np.linalg.cholesky(k)
        kc = np.exp(-_weighted_distances(candidates, observed, weights, arch.sizes))
        alpha = cho_solve((chol, True), z)
        v = solve_triangular(chol, kc.T, lower=True)
        var = np.clip(1.0 - (v * v).sum(0), 1e-9, None)
        return mu + sd * (kc @ alpha), sd * np.sqrt(var)

    def _cost_inputs(
        self, study: optuna.Study, arch: _Encoding, observed: np.ndarray, candidates: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The standardized log-costs of ``observed`` and ``candidates``, inputs of the
        one-objective model: from ``costs`` (unless it is slow, ``n_exact``), else the
        ``cost_attrs`` the study's trials recorded, predicted for untrained candidates by
        a ridge regression of them; (None, None) when neither is there."""
        if self.costs is not None:
            if self.n_exact is not None:
                return None, None
            known = [list(self._known_costs(arch, r).values()) for r in observed]
            unknown = [list(self._known_costs(arch, r).values()) for r in candidates]
        else:
            recorded = _recorded_costs(study, arch, list(self.cost_attrs), observed, candidates)
            if recorded is None:
                return None, None
            known, unknown = recorded
        logs, candidate_logs = np.log1p(np.abs(known)), np.log1p(np.abs(unknown))
        centre, scale = logs.mean(0), logs.std(0) + 1e-9
        return (logs - centre) / scale, (candidate_logs - centre) / scale

    def _hyperparameters(
        self, observed: tuple[np.ndarray, np.ndarray | None], z: np.ndarray
    ) -> np.ndarray:
        """Log weight per input (inverse length scale) and log noise, by maximum marginal
        likelihood; refitted while the study is small, then each time it grew by a tenth
        (a fit costs a Cholesky factorization many times over, a prediction once)."""
        from scipy.optimize import minimize

        n = len(z)
        dims = observed[0].shape[1] + (0 if observed[1] is None else observed[1].shape[1])
        previous = self._theta
        if previous is not None and len(previous) != dims + 1:
            previous = None
        if previous is not None and n < self._fitted_at * 1.1:
            return previous
        distances = _distances(observed, observed)
        prior = np.full(dims, -np.log(self.length_scale))
        start = previous if previous is not None else np.append(prior, np.log(1e-2))
        result = minimize(
            _neg_log_likelihood,
            start,
            args=(distances, z, prior),
            jac=True,
            method="L-BFGS-B",
            bounds=[(-5.0, 3.0)] * dims + [(np.log(1e-4), 0.0)],
            options={"maxiter": 50},
        )
        self._theta, self._fitted_at = result.x, n
        return result.x


class _Encoding:
    """Architectures of a relative search space as rows of choice indices."""

    def __init__(self, space: Mapping[str, BaseDistribution]) -> None:
        self.names = sorted(space)
        self.choices = [choices(space[n], _MAX_INT_CHOICES) for n in self.names]
        self.index = [{c: i for i, c in enumerate(ch)} for ch in self.choices]  # type: ignore[union-attr]
        self.sizes = np.array([len(c) for c in self.choices])  # type: ignore[arg-type]

    def covers(self, params: Mapping[str, Any]) -> bool:
        pairs = zip(self.names, self.index, strict=True)
        return all(n in params and params[n] in i for n, i in pairs)

    def encode(self, params: Sequence[Mapping[str, Any]]) -> np.ndarray:
        rows = [[i[p[n]] for n, i in zip(self.names, self.index, strict=True)] for p in params]
        return np.array(rows, dtype=int).reshape(len(rows), len(self.names))

    def decode(self, row: np.ndarray) -> dict[str, Any]:
        named = zip(self.names, self.choices, row.tolist(), strict=True)
        return {n: c[i] for n, c, i in named}  # type: ignore[index]


def _learned_costs(
    study: optuna.Study, arch: _Encoding, names: list[str], candidates: np.ndarray
) -> np.ndarray:
    """Costs of untrained candidates, by ridge regression on one-hot choices of the costs
    the study recorded (values of completed trials, user attributes of the others)."""
    learned = _recorded_costs(study, arch, names, candidates[:0], candidates)
    if learned is None:
        raise ValueError(
            f"No trial recorded the costs {names}; pass costs=... to CostAwareSampler."
        )
    return learned[1]


def _ridge(
    x: np.ndarray, targets: np.ndarray, candidates: np.ndarray, sizes: np.ndarray
) -> np.ndarray:
    """Targets of ``candidates`` by ridge regression on one-hot choices, fitted on a
    sign-preserving log scale (costs and constraint values span orders of magnitude)."""
    y = np.sign(targets) * np.log1p(np.abs(targets))
    features, wanted = _one_hot(x, sizes), _one_hot(candidates, sizes)
    centre = y.mean(0)
    gram = features.T @ features + 1e-3 * np.eye(features.shape[1])
    predicted = wanted @ np.linalg.solve(gram, features.T @ (y - centre)) + centre
    return np.sign(predicted) * np.expm1(np.abs(predicted))


def _recorded_costs(
    study: optuna.Study,
    arch: _Encoding,
    names: list[str],
    observed: np.ndarray,
    candidates: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The costs ``names`` of ``observed`` (as recorded, where a trial recorded them) and
    of ``candidates`` (by ridge regression of the recorded ones); None if none recorded."""
    rows, values = [], []
    for trial in study.get_trials(deepcopy=False) if names else ():
        recorded = _recorded(trial, study, names)
        if recorded is not None and arch.covers(trial.params):
            rows.append(trial.params)
            values.append(recorded)
    if not rows:
        return None
    x, y = arch.encode(rows), np.array(values)
    predicted = _ridge(x, y, np.concatenate([observed, candidates]), arch.sizes)
    held = {row.tobytes(): value for row, value in zip(x, y, strict=True)}
    pairs = zip(observed, predicted[: len(observed)], strict=True)
    known = np.array([held.get(row.tobytes(), guess) for row, guess in pairs])
    return known.reshape(len(observed), len(names)), predicted[len(observed) :]


_IN_FLIGHT_SECONDS = 60.0  # a trial RUNNING longer without its choices is not sampling


def _in_flight(
    study: optuna.Study, trial: FrozenTrial, space: Mapping[str, BaseDistribution]
) -> int:
    """Trials started before ``trial``, in the last minute, still RUNNING without
    choices in ``space``: their samplers are choosing from the history ``trial``'s sees
    (workers, pool slots, machines sharing the study; sampled within milliseconds of
    each other, they would all propose the same best candidate)."""
    now = datetime.datetime.now()
    return sum(
        t.number < trial.number
        and not any(n in t.params for n in space)
        and t.datetime_start is not None
        and (now - t.datetime_start).total_seconds() < _IN_FLIGHT_SECONDS
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )


def _ranked(gain: np.ndarray, rank: int) -> int:
    """The index of the ``rank``-th largest gain (0: the largest; the smallest where
    there are fewer)."""
    order = np.argsort(-gain, kind="stable")
    return int(order[min(rank, len(order) - 1)])


def _far(candidates: np.ndarray, best: np.ndarray) -> np.ndarray:
    """The candidates :data:`FAR` or more choices away from ``best`` (all, if none is)."""
    far = (candidates != best).sum(1) >= FAR
    return candidates[far] if far.any() else candidates


def _feasible(study: optuna.Study, arch: _Encoding, candidates: np.ndarray) -> np.ndarray:
    """Which candidates the constraints recorded so far (``trial.set_constraint``, e.g.
    optnas's budgets) predict feasible; all of them if none is, or nothing was recorded."""
    held = [t for t in study.get_trials(deepcopy=False) if t.constraints and arch.covers(t.params)]
    names = sorted({n for t in held for n in t.constraints})
    held = [t for t in held if all(n in t.constraints for n in names)]
    if not held or len(candidates) == 0:
        return np.ones(len(candidates), dtype=bool)
    values = np.array([[t.constraints[n] for n in names] for t in held])
    ok = _ridge(arch.encode([t.params for t in held]), values, candidates, arch.sizes) <= 0
    ok = ok.all(1)
    return ok if ok.any() else np.ones(len(candidates), dtype=bool)


def _with_pruned(
    study: optuna.Study, arch: _Encoding, target: int, trained: np.ndarray, loss: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The trained architectures plus those pruned while training, at the best accuracy
    their curve (optnas's ``val_curve``) reached: a pessimistic value, but it keeps the
    model away from where the pruner found nothing good."""
    names = study.metric_names or []
    if not names or names[target] != "accuracy":
        return trained, loss
    pruned = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        if t.user_attrs.get("val_curve") and arch.covers(t.params)
    ]
    if not pruned:
        return trained, loss
    sign = 1.0 if study.directions[target] == StudyDirection.MINIMIZE else -1.0
    extra = np.array([sign * max(t.user_attrs["val_curve"]) for t in pruned])
    return np.concatenate([trained, arch.encode([t.params for t in pruned])]), np.append(
        loss, extra
    )


def _recorded(trial: FrozenTrial, study: optuna.Study, names: list[str]) -> list[float] | None:
    metric = study.metric_names or []
    out = []
    for name in names:
        if trial.state == TrialState.COMPLETE and name in metric:
            out.append(float(trial.values[metric.index(name)]))
        elif isinstance(trial.user_attrs.get(name), (int, float)):
            out.append(float(trial.user_attrs[name]))
        else:
            return None
    return out


def _one_hot(rows: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.zeros((len(rows), int(sizes.sum())))
    out[np.arange(len(rows))[:, None], rows + offsets] = 1.0
    return out


def _distances(
    a: tuple[np.ndarray, np.ndarray | None], b: tuple[np.ndarray, np.ndarray | None]
) -> np.ndarray:
    """Per pair and input: 1 where a choice differs, the squared difference of a log-cost."""
    choices = (a[0][:, None, :] != b[0][None, :, :]).astype(float)
    if a[1] is None or b[1] is None:
        return choices
    return np.concatenate([choices, (a[1][:, None, :] - b[1][None, :, :]) ** 2], axis=2)


def _conditional(done: Sequence[FrozenTrial], space: Mapping[str, BaseDistribution]) -> bool:
    """Whether trials chose parameters outside the modelled ones (conditional choices,
    floats): the model would see only part of each architecture, and on such a space
    (convnet, with budgets) it proposed mostly over-budget candidates, so the independent
    sampler decides every parameter instead."""
    return any(len(t.params) > len(space) for t in done)


def _kept(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most :data:`_MAX_POINTS` observations for the model: the best half by loss and
    the most recent, since the cost of a prediction grows with their square."""
    if len(y) <= _MAX_POINTS:
        return x, y
    best = np.argsort(y, kind="stable")[: _MAX_POINTS // 2]
    recent = np.setdiff1d(np.arange(len(y)), best)[-(_MAX_POINTS - len(best)) :]
    keep = np.sort(np.concatenate([best, recent]))
    return x[keep], y[keep]


def _weighted_distances(
    a: tuple[np.ndarray, np.ndarray | None],
    b: tuple[np.ndarray, np.ndarray | None],
    weights: np.ndarray,
    sizes: np.ndarray,
) -> np.ndarray:
    """``_distances(a, b) @ weights`` through matrix products (no pair-by-input tensor):
    the weighted mismatches are the total weight less the weighted matches of one-hots."""
    dims = len(sizes)
    per_value = np.repeat(weights[:dims], sizes)
    out = weights[:dims].sum() - (_one_hot(a[0], sizes) * per_value) @ _one_hot(b[0], sizes).T
    if a[1] is not None and b[1] is not None:
        w = weights[dims:]
        sq_a, sq_b = (a[1] ** 2) @ w, (b[1] ** 2) @ w
        out = out + sq_a[:, None] + sq_b[None, :] - 2 * (a[1] * w) @ b[1].T
    return out


def _neg_log_likelihood(
    theta: np.ndarray, distances: np.ndarray, z: np.ndarray, prior: np.ndarray
) -> tuple[float, np.ndarray]:
    """The GP's negative log marginal likelihood and its gradient, with a weak log-normal
    prior on the weights (a few dozen trials cannot pin each length scale down)."""
    weights, noise = np.exp(theta[:-1]), np.exp(theta[-1])
    k_free = np.exp(-(distances @ weights))
    try:
        chol = np.linalg.cholesky(k_free + (noise + 1e-6) * np.eye(len(z)))
    except np.linalg.LinAlgError:
        return 1e10, np.zeros_like(theta)
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
    inverse = np.linalg.solve(chol.T, np.linalg.solve(chol, np.eye(len(z))))
    m = inverse - np.outer(alpha, alpha)
    grad_weights = -0.5 * weights * np.einsum("ab,abj->j", m * k_free, distances)
    spread = theta[:-1] - prior
    value = 0.5 * z @ alpha + np.log(np.diag(chol)).sum() + 0.05 * (spread**2).sum()
    return float(value), np.append(grad_weights + 0.1 * spread, 0.5 * noise * np.trace(m))


def _warp(loss: np.ndarray, bar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-distance to the best loss: a few very bad architectures (accuracy near chance)
    would otherwise dominate the standardized targets and flatten the model where it
    matters, among the good ones. (Only with one objective: along a Pareto front the cheap,
    inaccurate architectures matter as much.)"""
    low, floor = loss.min(), 1e-2 * (np.ptp(loss) + 1e-9)
    return np.log(loss - low + floor), np.log(np.maximum(bar - low, 0) + floor)


def _loss(trial: FrozenTrial, index: int, directions: Sequence[StudyDirection]) -> float:
    value = float(trial.values[index])
    return value if directions[index] == StudyDirection.MINIMIZE else -value


def _bar(costs: np.ndarray, trained_costs: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Per candidate, the lowest loss of a trained architecture that costs no more; for a
    candidate cheaper than all of them, a loss worse than any seen (any result improves)."""
    worst = loss.max() + np.ptp(loss) + 1e-9
    if costs.shape[1] == 0:
        return np.full(len(costs), loss.min())
    cheaper = (trained_costs[None, :, :] <= costs[:, None, :]).all(2)
    return np.where(cheaper, loss[None, :], worst).min(1)


def _expected_improvement(
    bar: np.ndarray, mean: np.ndarray, std: np.ndarray, margin: float = 0.0
) -> np.ndarray:
    """Expected improvement on ``bar`` by more than ``margin`` posterior deviations."""
    from scipy.special import ndtr

    bar = bar - margin * std
    z = (bar - mean) / std
    return (bar - mean) * ndtr(z) + std * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


def _neighbors(rows: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Every architecture one choice away from one of ``rows``."""
    out = [
        np.where(np.arange(len(sizes)) == p, v, row)
        for row in rows
        for p in range(len(sizes))
        for v in range(sizes[p])
        if v != row[p]
    ]
    return np.array(out, dtype=int).reshape(-1, len(sizes))
