"""The artefact cache: reuse, rebuild on a changed key, never reuse an interrupted build."""

import pytest
from hydra import compose, initialize_config_module

from align_cli.config import register_configs
from align_cli.pipeline import COMPLETE, cached_stage, stage_key

register_configs()  # the structured configs the compose() below builds on


def cfg(*overrides):
    with initialize_config_module(config_module="align_cli.conf", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_stage_keys_hash_exactly_the_fields_that_feed_the_stage():
    base = cfg()
    assert stage_key(base, "base") == stage_key(cfg("algo=dpo", "algo.lr=0.5", "algo.beta=0.3", "eval.seed=9", "seed=3"), "base")
    assert stage_key(base, "rm") == stage_key(cfg("model.lora.r=8", "task.num_eval_prompts=7"), "rm")
    assert stage_key(base, "base") != stage_key(cfg("task.num_sft_examples=10"), "base")
    changed_rm = cfg("reward.lr=0.5")
    assert stage_key(base, "pairs") == stage_key(changed_rm, "pairs")
    assert stage_key(base, "rm") != stage_key(changed_rm, "rm")
    changed_pairs = cfg("task.label_temperature=1.0")
    assert stage_key(base, "base") == stage_key(changed_pairs, "base")
    assert stage_key(base, "rm") != stage_key(changed_pairs, "rm")  # later stages follow earlier ones


def test_cached_stage_reuses_rebuilds_and_ignores_half_written_entries(tmp_path):
    builds = []

    def build(out):
        builds.append(out)
        (out / "artefact.txt").write_text("ok")
        return {"n": len(builds)}

    path, reused = cached_stage(tmp_path, "base", "k1", build, {})
    assert not reused and (path / COMPLETE).is_file() and (path / "artefact.txt").read_text() == "ok"
    again, reused = cached_stage(tmp_path, "base", "k1", build, {})
    assert reused and again == path and len(builds) == 1
    _, reused = cached_stage(tmp_path, "base", "k2", build, {})
    assert not reused and len(builds) == 2
    # A dir left by an interrupted build (no completion marker) is not reused.
    broken = tmp_path / "base" / "k3"
    broken.mkdir(parents=True)
    (broken / "artefact.txt").write_text("half")
    path, reused = cached_stage(tmp_path, "base", "k3", build, {})
    assert not reused and (path / "artefact.txt").read_text() == "ok"


def test_failed_build_leaves_nothing_behind(tmp_path):
    def build(out):
        (out / "partial.bin").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cached_stage(tmp_path, "pairs", "k", build, {})
    assert list((tmp_path / "pairs").iterdir()) == []
