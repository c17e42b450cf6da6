"""Benchmark: ``optnas.cost.measure`` against torchvision's published cost figures.

Builds five torchvision classifiers (no weights are downloaded) and measures them at
224x224. Compares, side by side, the parameter count with torchvision's ``num_params`` and
the multiply-accumulates with torchvision's published "GFLOPS" (its model tables, and the
3-decimal ``_ops`` of its weights' metadata), which are in fact GMACs; optnas reports FLOPs
as twice the MACs.

Usage::

    python studies/torchvision_costs.py
"""

from __future__ import annotations

import time

from torchvision import models

from optnas.cost import measure

# torchvision's published "GFLOPS" (its model tables), rounded as published.
PUBLISHED_GMACS = {
    "resnet18": 1.81,
    "resnet50": 4.09,
    "mobilenet_v2": 0.30,
    "mobilenet_v3_large": 0.22,
    "efficientnet_b0": 0.39,
}


def main() -> None:
    header = ("model", "params", "published", "GMACs", "published", "diff", "_ops", "GFLOPs")
    print("{:<20}{:>12}{:>12}{:>8}{:>11}{:>8}{:>8}{:>8}  FLOPs=2xMACs".format(*header))
    worst = 0.0
    start = time.perf_counter()
    for name, published in PUBLISHED_GMACS.items():
        meta = models.get_model_weights(name).DEFAULT.meta
        cost = measure(models.get_model(name), (3, 224, 224))
        gmacs = cost["macs"] / 1e9
        diff = gmacs / published - 1
        worst = max(worst, abs(diff))
        print(
            f"{name:<20}{cost['params']:>12,}{meta['num_params']:>12,}{gmacs:>8.3f}"
            f"{published:>11.2f}{diff:>+8.2%}{meta['_ops']:>8.3f}{cost['flops'] / 1e9:>8.3f}"
            f"  {'yes' if cost['flops'] == 2 * cost['macs'] else 'NO'}"
        )
    print(f"largest MACs difference {worst:.2%}; {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
