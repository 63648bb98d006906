"""scripts/pinned_build.py: the cache entries of the default configs, saved and restored byte for byte."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pinned_build.py"
sys.path.insert(0, str(SCRIPT.parent))
import pinned_build  # noqa: E402


def run_script(cache: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, "ALIGN_CACHE": str(cache)})


def fake_entry(cache: Path, entry: str, payload: bytes) -> None:
    folder = cache / entry
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(payload)
    (folder / "info.json").write_text(json.dumps({"rm_accuracy": 0.797, "path": "x", "reused": False}))
    (folder / "COMPLETE").write_text("done")


def test_save_then_restore_puts_the_pinned_build_in_place_of_a_local_one(tmp_path):
    entries = pinned_build.entries_of("sentiment")
    assert [entry.split("/")[0] for entry in entries] == ["base", "pairs", "rm"]
    built = tmp_path / "built"
    for entry in entries:
        fake_entry(built, entry, f"weights of {entry}".encode())
    archive = tmp_path / "pinned.tar.gz"
    proc = run_script(built, "save", "--tasks", "sentiment", "--out", str(archive))
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert list(manifest) == entries and manifest[entries[2]]["figures"] == {"rm_accuracy": 0.797}

    fresh = tmp_path / "fresh"  # another machine: one entry built locally, differently
    fake_entry(fresh, entries[0], b"another machine's weights")
    proc = run_script(fresh, "restore", "--archive", str(archive))
    assert proc.returncode == 0, proc.stderr
    for entry in entries:
        assert (fresh / entry / "model.safetensors").read_bytes() == f"weights of {entry}".encode()
        assert (fresh / entry / "COMPLETE").is_file()  # align prepare reuses it
    aside = [p for p in (fresh / "base").iterdir() if ".local-" in p.name]
    assert len(aside) == 1 and (aside[0] / "model.safetensors").read_bytes() == b"another machine's weights"
    again = run_script(fresh, "restore", "--archive", str(archive))
    assert again.returncode == 0 and again.stdout.count("already in the cache") == 3


def test_a_damaged_archive_or_an_empty_cache_is_one_error_line(tmp_path):
    proc = run_script(tmp_path / "empty", "save", "--out", str(tmp_path / "a.tar.gz"))
    assert proc.returncode == 2 and "run `align prepare` first" in proc.stderr and "Traceback" not in proc.stderr
    entry = pinned_build.entries_of("sentiment")[0]
    fake_entry(tmp_path / "built", entry, b"weights")
    archive = tmp_path / "pinned.tar.gz"
    assert run_script(tmp_path / "built", "save", "--tasks", "sentiment", "--out", str(archive)).returncode == 0
    (tmp_path / "built" / entry / "model.safetensors").write_bytes(b"tampered")  # re-pack with the old manifest
    with tarfile.open(archive) as tar:
        manifest = tar.extractfile("manifest.json").read()
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        tar.add(tmp_path / "built" / entry, arcname=entry)
    proc = run_script(tmp_path / "fresh", "restore", "--archive", str(archive))
    assert proc.returncode == 2 and "does not match its manifest" in proc.stderr
    assert not (tmp_path / "fresh" / entry).exists()  # nothing half-restored


def test_an_archive_of_other_keys_than_todays_defaults_is_refused(tmp_path):
    real = pinned_build.entries_of("sentiment")[0]  # base/<key of today's default config>
    stale = "base/0123456789abcdef"  # a key some older default gave
    fake_entry(tmp_path / "built", stale, b"old weights")
    manifest = {stale: {"task": "sentiment", "figures": {},
                        "files": {p.name: pinned_build.digest(p) for p in sorted((tmp_path / "built" / stale).iterdir())}}}
    archive = tmp_path / "stale.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        blob = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
        tar.add(tmp_path / "built" / stale, arcname=stale)
    proc = run_script(tmp_path / "fresh", "restore", "--archive", str(archive))
    assert proc.returncode == 2 and f"lacks {real}" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "fresh" / stale).exists()
