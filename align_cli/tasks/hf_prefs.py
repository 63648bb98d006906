"""task=hf_prefs: any preference dataset in TRL's format (prompt / chosen / rejected) from a hub id or a
local .json / .jsonl / .parquet file. There is no gold reward: the reward model judges the eval samples.

Conversational rows (lists of {"role", "content"} messages) are flattened to their contents, so one
code path serves every tokenizer, the word-level tiny one included.
"""

from __future__ import annotations

import random
from pathlib import Path

from align_cli.errors import UserError
from align_cli.tasks.base import Task

REQUIRED_COLUMNS = ("prompt", "chosen", "rejected")


def _flatten(value, leading_space: bool) -> str:
    if isinstance(value, list):  # conversational: a list of messages
        value = " ".join(str(m.get("content", "")) for m in value)
    text = str(value)
    if leading_space and text and not text[0].isspace():
        text = " " + text  # TRL joins prompt and completion as is: keep the word separator
    return text


def load_preference_rows(source: str, split: str = "train", max_rows: int | None = None) -> list[dict]:
    """Rows {"prompt", "chosen", "rejected"} from a local file or a hub dataset, with clear errors."""
    import datasets

    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    try:
        if suffix in (".json", ".jsonl"):
            if not path.is_file():
                raise UserError(f"task.dataset: no such file: {path}")
            ds = datasets.load_dataset("json", data_files=str(path), split="train")
        elif suffix == ".parquet":
            if not path.is_file():
                raise UserError(f"task.dataset: no such file: {path}")
            ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
        else:
            ds = datasets.load_dataset(source, split=split)
    except UserError:
        raise
    except Exception as exc:  # datasets raises many types for unreadable or unreachable data
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"task.dataset={source!r} could not be loaded: {first}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise UserError(
            f"task.dataset={source!r} lacks column(s) {', '.join(missing)}; it has {', '.join(ds.column_names)}; "
            f"TRL's preference format needs {', '.join(REQUIRED_COLUMNS)}"
        )
    if max_rows is not None:
        ds = ds.select(range(min(max_rows, len(ds))))
    rows = [
        {"prompt": _flatten(r["prompt"], False), "chosen": _flatten(r["chosen"], True),
         "rejected": _flatten(r["rejected"], True)}
        for r in ds
    ]
    if len(rows) < 2:
        raise UserError(f"task.dataset={source!r} has {len(rows)} row(s); at least 2 are needed")
    return rows


class HFPrefsTask(Task):
    name = "hf_prefs"
    has_gold = False

    def __init__(self, cfg):
        super().__init__(cfg)
        rows = load_preference_rows(cfg.dataset, cfg.split, cfg.max_rows)
        random.Random(cfg.data_seed).shuffle(rows)
        n_eval = max(1, int(round(len(rows) * cfg.eval_fraction)))
        self.eval_rows, self.train_rows = rows[:n_eval], rows[n_eval:]

    def sft_texts(self) -> list[str]:
        return [r["prompt"] + r["chosen"] for r in self.train_rows]

    def tokenizer_texts(self) -> list[str]:
        return [r[c] for r in self.train_rows + self.eval_rows for c in REQUIRED_COLUMNS]

    def eval_prompts(self) -> list[str]:
        return [r["prompt"] for r in self.eval_rows][: self.cfg.num_eval_prompts]

    def train_prompts(self) -> list[str]:
        return [r["prompt"] for r in self.train_rows][: self.cfg.num_train_prompts]

    def make_pairs(self, policy, tokenizer, seed: int, progress=None) -> list[dict]:
        # Held-out rows go last: the reward model's accuracy is measured on them.
        return list(self.train_rows) + list(self.eval_rows)

    def held_out_pairs(self) -> int:
        return len(self.eval_rows)
