"""Options added to an algorithm after runs were recorded, with the value those runs had in effect.

A run recorded before an option existed has no such key in its config; `align compare` reads it as this
value, so the run pools with new runs at the default instead of forming a group of its own (committed
records outlive the code that made them). Add an entry whenever a field is added to an algorithm's
Config with a default that keeps the old behaviour.
"""

from __future__ import annotations

ADDED_OPTIONS: dict[str, dict[str, object]] = {  # algo name -> {field: value before the field existed}
    "sac": {"learner": "sac", "twin_reduce": "min", "n_step_correction": "none", "trace_lambda": 1.0,
            "alpha_kl_source": "replay", "diagnose_every": 0},
}


def with_added_options(config: dict[str, object]) -> dict[str, object]:
    """A flattened config ({"algo.name": ..., ...}) with every added option of its algorithm it lacks."""
    added = ADDED_OPTIONS.get(str(config.get("algo.name")), {})
    return {**{f"algo.{key}": value for key, value in added.items()}, **config}
