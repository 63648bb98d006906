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


def get(name: str) -> ModuleType:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise UserError(f"unknown algo {name!r}; valid choices: {', '.join(sorted(ALGORITHMS))}") from None
