"""One self-contained HTML report of a study, with plotly figures.

Sections: the Pareto front (accuracy against parameters and against FLOPs; pruned and
over-budget trials shown apart), the hypervolume over trials (best accuracy with one
objective), every trial's learning curve (pruned ones included), parameter importances
(Optuna's), and a table of the Pareto-optimal trials with their architecture strings. plotly.js
is inlined, so the file opens offline.
"""

from __future__ import annotations

import html
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optnas.cli import _fmt

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["SECTIONS", "report"]

SECTIONS = {
    "pareto-front": "Pareto front",
    "hypervolume": "Hypervolume over trials",
    "learning-curves": "Learning curves",
    "importances": "Parameter importances",
    "pareto-trials": "Pareto-optimal trials",
}
"""The report's sections: HTML id and heading."""

_COLORS = {"front": "#d62728", "complete": "#1f77b4", "pruned": "#999999", "budget": "#ff7f0e"}


def report(study: optuna.Study, path: str | os.PathLike[str]) -> Path:
    """Write an HTML report of ``study`` to ``path``: one file that opens offline.

    Args:
        study: An optnas study (costs and curves are read from its trials' user attrs).
        path: The HTML file to write.

    Returns:
        The path written.

    Example:
        >>> import optnas
        >>> study = optnas.search("convnet", "digits", ("accuracy", "params"))  # doctest: +SKIP
        >>> optnas.report.report(study, "report.html").name  # doctest: +SKIP
        'report.html'
    """
    figures = {
        "pareto-front": _pareto_figure(study),
        "hypervolume": _progress_figure(study),
        "learning-curves": _curves_figure(study),
        "importances": _importance_figure(study),
    }
    parts = [_header(study)]
    first = True
    for key, title in SECTIONS.items():
        parts.append(f'<section id="{key}"><h2>{html.escape(title)}</h2>')
        if key == "pareto-trials":
            parts.append(_table(study))
        elif isinstance(figures[key], str):
            parts.append(f"<p>{html.escape(figures[key])}</p>")
        else:
            # plotly.js once, inlined: the file needs no network.
            parts.append(figures[key].to_html(full_html=False, include_plotlyjs=first))
            first = False
        parts.append("</section>")
    out = Path(path)
    out.write_text(_page(study.study_name, "\n".join(parts)), encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------------
# Figures


def _pareto_figure(study: optuna.Study) -> go.Figure:
    from plotly.subplots import make_subplots

    costs = _cost_axes(study)
    titles = [f"accuracy vs {_AXIS_TITLES.get(c, c)}" for c in costs]
    fig = make_subplots(rows=1, cols=len(costs), subplot_titles=titles)
    front = {t.number for t in _best(study)}
    groups = _groups(study, front)
    bottom = min((y for g in groups.values() for _, y in g if y is not None), default=0.0)
    for col, cost in enumerate(costs, start=1):
        for name, members in groups.items():
            trials = [t for t, _ in members if cost in t.user_attrs]
            ys = [bottom - 0.02 if y is None else y for t, y in members if cost in t.user_attrs]
            fig.add_scatter(
                x=[t.user_attrs[cost] for t in trials],
                y=ys,
                mode="markers",
                name=name,
                legendgroup=name,
                showlegend=col == 1,
                marker={
                    "color": _COLORS[_group_color(name)],
                    "size": 9 if "Pareto" in name else 6,
                    "symbol": "x" if "budget" in name else "circle",
                },  # fmt: skip
                text=[_hover(t) for t in trials],
                hoverinfo="text",
                row=1,
                col=col,
            )
        fig.update_xaxes(type="log", title_text=_AXIS_TITLES.get(cost, cost), row=1, col=col)
    fig.update_yaxes(title_text="validation accuracy", row=1, col=1)
    fig.update_layout(height=450, margin={"t": 40})
    return fig


_AXIS_TITLES = {"params": "parameters", "flops": "FLOPs", "macs": "MACs",
                "latency": "latency (ms)"}  # fmt: skip


def _cost_axes(study: optuna.Study) -> list[str]:
    """The costs the Pareto front is drawn against: the study's cost objectives (the front
    is optimal in those), or parameters and FLOPs where accuracy is its only one."""
    costs = [n for n in study.metric_names or [] if n in _AXIS_TITLES]
    return costs or ["params", "flops"]


def _groups(
    study: optuna.Study, front: set[int]
) -> dict[str, list[tuple[FrozenTrial, float | None]]]:
    """Trials by kind, each with its accuracy (None when not trained)."""
    groups: dict[str, list[tuple[FrozenTrial, float | None]]] = {
        "Pareto-optimal": [],
        "completed": [],
        "pruned (last validation accuracy)": [],
        "over budget, not trained (drawn below)": [],
    }
    for t in study.get_trials(deepcopy=False):
        curve = t.user_attrs.get("val_curve") or []
        if t.state == TrialState.COMPLETE:
            key = "Pareto-optimal" if t.number in front else "completed"
            groups[key].append((t, _accuracy(study, t)))
        elif t.state == TrialState.PRUNED and "duplicate_of" not in t.user_attrs:
            if curve:
                groups["pruned (last validation accuracy)"].append((t, curve[-1]))
            elif _over_budget(t):
                groups["over budget, not trained (drawn below)"].append((t, None))
    return groups


def _group_color(name: str) -> str:
    if name.startswith("Pareto"):
        return "front"
    return {"c": "complete", "p": "pruned", "o": "budget"}[name[0]]


def _progress_figure(study: optuna.Study) -> go.Figure | str:
    import plotly.graph_objects as go

    if len(study.directions) == 1:
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not done:
            return "No completed trial yet."
        best, xs, ys = None, [], []
        for t in done:
            value = t.value
            better = study.direction.name == "MAXIMIZE"
            if best is None or (value > best if better else value < best):
                best = value
            xs.append(t.number)
            ys.append(best)
        fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", name="best so far"))
        fig.update_layout(xaxis_title="trial", yaxis_title="best value", height=380)
        return fig
    from optnas.hypervolume import bounds_of, history

    points = history(study)
    if not points:
        return "No finished trial yet."
    fig = go.Figure(
        go.Scatter(
            x=[p.trial for p in points], y=[p.hypervolume for p in points], mode="lines+markers"
        )
    )
    bounds = ", ".join(f"{k} {lo:,.4g}..{hi:,.4g}" for k, (lo, hi) in bounds_of(study).items())
    fig.update_layout(
        xaxis_title="trial (in the order trials finished)",
        yaxis_title="hypervolume (share of the unit box)",
        title={"text": f"error; costs log-scaled between {bounds}", "font": {"size": 12}},
        height=380,
    )
    return fig


def _curves_figure(study: optuna.Study) -> go.Figure | str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for t in study.get_trials(deepcopy=False):
        curve = t.user_attrs.get("val_curve") or []
        if not curve or "duplicate_of" in t.user_attrs:
            continue
        pruned = t.state == TrialState.PRUNED
        fig.add_scatter(
            x=list(range(1, len(curve) + 1)),
            y=curve,
            mode="lines+markers",
            name=f"trial {t.number}" + (" (pruned)" if pruned else ""),
            line={"dash": "dot" if pruned else "solid", "width": 1 if pruned else 2},
            marker={"size": 4},
            opacity=0.6 if pruned else 0.9,
        )
    if not fig.data:
        return "No trial trained yet."
    fig.update_layout(
        xaxis_title="epoch", yaxis_title="validation accuracy", height=450, showlegend=True
    )
    return fig


def _importance_figure(study: optuna.Study) -> go.Figure | str:
    import plotly.graph_objects as go

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return "Parameter importances need at least two completed trials."
    index = _names(study).index("accuracy") if "accuracy" in _names(study) else 0
    try:
        scores = optuna.importance.get_param_importances(
            study, target=lambda t: t.values[index], evaluator=_evaluator()
        )
    except (ValueError, RuntimeError) as error:
        return f"Parameter importances could not be computed: {error}"
    names = list(scores)[::-1]
    fig = go.Figure(go.Bar(x=[scores[n] for n in names], y=names, orientation="h"))
    fig.update_layout(
        xaxis_title=f"importance for {_names(study)[index]} (fANOVA, Optuna's)",
        height=max(300, 24 * len(names) + 120),
        margin={"l": 160},
    )
    return fig


def _evaluator() -> Any:
    # Seeded, so that the same study gives the same report.
    return optuna.importance.FanovaImportanceEvaluator(seed=0)


# ---------------------------------------------------------------------------------------
# Table and page


def _table(study: optuna.Study) -> str:
    best = sorted(_best(study), key=lambda t: t.number)
    if not best:
        return "<p>No completed trial yet.</p>"
    names = _names(study)
    costs = [c for c in ("params", "flops") if c not in names]
    head = ["trial", *names, *costs, "epochs", "architecture"]
    rows = []
    for t in best:
        cells = [str(t.number), *(_fmt(v, n) for v, n in zip(t.values, names, strict=True))]
        cells += [_fmt(t.user_attrs.get(c, ""), c) for c in costs]
        cells += [str(t.user_attrs.get("epochs_trained", "")), str(t.user_attrs.get("arch", ""))]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
    return f"<table>{header}{''.join(rows)}</table>"


def _header(study: optuna.Study) -> str:
    from collections import Counter

    counts = Counter(t.state for t in study.get_trials(deepcopy=False))
    objectives = ", ".join(
        f"{n} ({d.name.lower()})" for n, d in zip(_names(study), study.directions, strict=True)
    )
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<h1>Study {html.escape(study.study_name)}</h1>"
        f"<p>{len(study.trials)} trials: {counts[TrialState.COMPLETE]} complete, "
        f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed. "
        f"Objectives: {html.escape(objectives)}. Report written {when}.</p>"
    )


def _page(title: str, body: str) -> str:
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}td:last-child{text-align:left;font-family:monospace}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>optnas: '
        f"{html.escape(title)}</title><style>{style}</style></head><body>\n{body}\n"
        "</body></html>\n"
    )


# ---------------------------------------------------------------------------------------
# Helpers


def _best(study: optuna.Study) -> list[FrozenTrial]:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    return list(study.best_trials) if len(study.directions) > 1 else [study.best_trial]


def _names(study: optuna.Study) -> list[str]:
    return list(study.metric_names or [f"value{i}" for i in range(len(study.directions))])


def _accuracy(study: optuna.Study, trial: FrozenTrial) -> float | None:
    names = _names(study)
    if "accuracy" in names and trial.values is not None:
        return trial.values[names.index("accuracy")]
    curve = trial.user_attrs.get("val_curve") or []
    return curve[-1] if curve else None


def _over_budget(trial: FrozenTrial) -> bool:
    return any(c > 0 for c in (trial.constraints or {}).values()) or "over budget" in str(
        trial.user_attrs.get("pruned_reason", "")
    )


def _hover(trial: FrozenTrial) -> str:
    attrs = trial.user_attrs
    lines = [f"trial {trial.number} ({trial.state.name.lower()})", str(attrs.get("arch", ""))]
    lines += [f"{k}: {_fmt(attrs[k], k)}" for k in ("params", "flops") if k in attrs]
    if attrs.get("pruned_reason"):
        lines.append(str(attrs["pruned_reason"]))
    return "<br>".join(html.escape(line) for line in lines)
