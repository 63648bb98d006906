"""model=hf and task=hf_prefs on a tiny model and a preference file that the test itself writes."""

from __future__ import annotations

import json
import random

import pytest
from conftest import only_run_dir
from omegaconf import OmegaConf

from align_cli.config import ModelConfig
from align_cli.models import build_tiny_model, build_word_tokenizer

GOOD = ["great", "wonderful", "brilliant", "lovely"]
BAD = ["awful", "boring", "terrible", "dull"]


@pytest.fixture
def hf_inputs(tmp_path):
    rng = random.Random(0)
    rows = []
    for _ in range(120):
        subject = rng.choice(["the movie", "the plot", "the acting"])
        rows.append({"prompt": f"{subject} was", "chosen": f" {rng.choice(GOOD)} .",
                     "rejected": f" {rng.choice(BAD)} ."})
    data = tmp_path / "prefs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    texts = [r["prompt"] + r["chosen"] for r in rows] + [r["prompt"] + r["rejected"] for r in rows]
    tok = build_word_tokenizer(texts, [])
    cfg = OmegaConf.structured(ModelConfig(name="tiny", hidden_size=32, num_layers=1, num_heads=2,
                                           intermediate_size=64))
    model_dir = tmp_path / "my-model"
    build_tiny_model(cfg, tok, seed=0).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    return data, model_dir


def test_hf_model_and_local_preference_file_train_end_to_end(run_align, tmp_path, hf_inputs):
    data, model_dir = hf_inputs
    run_align("train", "task=hf_prefs", f"task.dataset={data}", "model=hf", f"model.path={model_dir}",
              "debug=smoke", "logger=none", "paths.runs_dir=runs", cache=tmp_path / "cache")
    run_dir = only_run_dir(tmp_path / "runs")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["model"] == "hf"
    final = summary["final"]
    assert "eval/gold_reward" not in final  # no gold reward on hf_prefs: the reward model judges
    for key in ("eval/rm_reward", "eval/win_rate_ref", "eval/kl_ref", "eval/entropy"):
        assert key in final
    assert summary["artefacts"]["base"]["path"] == str(model_dir)  # loaded as given, not rebuilt
    assert (run_dir / "checkpoints" / "final" / "adapter_model.safetensors").is_file()


def test_unreadable_model_path_is_a_clear_error(run_align, tmp_path, hf_inputs):
    data, _ = hf_inputs
    proc = run_align("train", "task=hf_prefs", f"task.dataset={data}", "model=hf", "model.path=/no/such/model",
                     "debug=smoke", "logger=none", "paths.runs_dir=runs", check=False, cache=tmp_path / "cache")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "/no/such/model" in proc.stderr
