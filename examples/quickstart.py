"""Search a space of your own with optnas, then rebuild the best network.

Run: python examples/quickstart.py   (about 10 s on 2 CPU cores)
"""

import optuna
from torch import nn

import optnas
from optnas.data import load


def my_space(trial: optuna.Trial, spec) -> nn.Module:
    """A define-by-run space: every choice is a trial.suggest_* call."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = spec.input_shape[0] * spec.input_shape[1] * spec.input_shape[2]
    for i in range(trial.suggest_int("n_layers", 1, 3)):
        out = trial.suggest_categorical(f"width{i}", [32, 64, 128])
        layers += [nn.Linear(width, out), nn.ReLU()]
        width = out
    layers.append(nn.Linear(width, spec.num_classes))
    return nn.Sequential(*layers)


study = optnas.search(
    my_space,
    "digits",
    ("accuracy", "params"),
    n_trials=15,
    epochs=10,
    seed=0,
    study_name="quickstart",
)
for trial in sorted(study.best_trials, key=lambda t: t.values[1]):
    accuracy, params = trial.values
    print(
        f"trial {trial.number}: accuracy {accuracy:.4f}, {int(params):,} params, "
        f"{trial.user_attrs['flops']:,} FLOPs: {trial.user_attrs['arch']}"
    )

# Rebuilding an architecture is calling the same function with the trial's parameters.
best = max(study.best_trials, key=lambda t: t.values[0])
model = my_space(optuna.trial.FixedTrial(best.params), load("digits").spec)
print(model)
