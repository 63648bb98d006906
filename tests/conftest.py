"""Shared fixtures: a per-session artefact cache and a helper that drives the real `align` console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ALIGN = str(Path(sys.executable).parent / "align")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("align_cache")


@pytest.fixture
def run_align(cache_dir, tmp_path):
    """Run `align <args>` as a user would; returns the CompletedProcess."""

    def run(*args: str, check: bool = True, cache: Path | None = None, timeout: int = 600):
        env = {**os.environ, "ALIGN_CACHE": str(cache or cache_dir), "WANDB_MODE": "offline",
               "WANDB_SILENT": "true", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        proc = subprocess.run([ALIGN, *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"align {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc

    return run


def only_run_dir(parent: Path) -> Path:
    dirs = [p.parent for p in parent.rglob("summary.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# Preference pairs and a tiny LoRA policy over their words: the loss tests of DPO and CPL share them.
PAIRS = [
    {"prompt": "the movie", "chosen": " was great .", "rejected": " was awful ."},
    {"prompt": "the plot was", "chosen": " good .", "rejected": " not good at all ."},
]


def tiny_pair_policy():
    """(tokenizer, fresh LoRA policy with a trainable lm_head); identical for every call."""
    import torch
    from omegaconf import OmegaConf

    from align_cli.config import LoraConfig, ModelConfig
    from align_cli.models import build_tiny_model, build_word_tokenizer, lora_policy

    tok = build_word_tokenizer([p[k] for p in PAIRS for k in ("prompt", "chosen", "rejected")] + ["at all"], [])
    model_cfg = OmegaConf.structured(ModelConfig(name="tiny", hidden_size=32, num_layers=1, num_heads=2,
                                                 intermediate_size=64))
    torch.manual_seed(0)
    policy = lora_policy(build_tiny_model(model_cfg, tok, seed=0), LoraConfig(r=4, alpha=8,
                                                                            modules_to_save=["lm_head"]))
    return tok, policy
