"""Explicit algorithm registry: name -> module (no auto-discovery).

Each module defines, top to bottom: `Config` (a dataclass with a help string per field), its losses,
its update, and `train(ctx)`; `ONLINE` says whether it samples and queries the reward during training.
"""

from __future__ import annotations

from types import ModuleType

from align_cli.algos import bon, cpl, dpo, grpo, ppo, rloo, rs, sac
from align_cli.errors import UserError

ALGORITHMS: dict[str, ModuleType] = {
    "bon": bon,
    "cpl": cpl,
    "dpo": dpo,
    "grpo": grpo,
    "ppo": ppo,
    "rloo": rloo,
    "rs": rs,
    "sac": sac,
}


# The order the research question names the algorithms (SAC, the on-policy baselines, then the offline and
# sampling ones): the row order of the results tables (scripts/final_answer.py, scripts/frontier_table.py).
QUESTION_ORDER: tuple[str, ...] = ("sac", "ppo", "grpo", "rloo", "dpo", "cpl", "rs", "bon")


def question_order(name: str) -> tuple[int, str]:
    """Sort key: an algorithm's place in QUESTION_ORDER (unknown names last, by name)."""
    return (QUESTION_ORDER.index(name) if name in QUESTION_ORDER else len(QUESTION_ORDER), name)


def get(name: str) -> ModuleType:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise UserError(f"unknown algo {name!r}; valid choices: {', '.join(sorted(ALGORITHMS))}") from None
