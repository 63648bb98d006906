"""One build of the shared artefacts for every machine: save the cache entries `align prepare` built, restore them.

`align prepare` builds the SFT policy, the preference pairs and the reward model deterministically from
their config, but not bit for bit across machines: floating point differs by CPU, so two machines give two
slightly different policies and reward models (step-0 gold -0.012, -0.010 and -0.002 on three builds of the
same config; plain SAC at alpha 1 ended at 0.54 gold on one and 0.48 on another), which is the size of the
effects the sweeps measure. Sweeps that run over several sessions on fresh machines therefore restore one
pinned build into the cache before `align prepare`, which then reuses it.

    python scripts/pinned_build.py save [--tasks sentiment,tree] [--out builds/pinned.tar.gz]
    python scripts/pinned_build.py restore [--archive builds/pinned.tar.gz]

`save` archives the cache entries (`<stage>/<key>/`) of each task's default config, with a manifest of their
files' SHA-256 and the figures `align prepare` measured; `restore` checks the archive against its manifest
and puts each entry in the cache, moving a different local build of the same key aside (`<key>.local-<time>`),
so the pinned build is the one every run uses. ALIGN_CACHE (or ~/.cache/align) is the cache, as for align.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ARCHIVE = ROOT / "builds" / "pinned.tar.gz"
MANIFEST = "manifest.json"


def cache_root() -> Path:
    return Path(os.path.expanduser(os.environ.get("ALIGN_CACHE", "~/.cache/align")))


def entries_of(task: str) -> list[str]:
    """The cache entries (`<stage>/<key>`) that `align prepare task=<task>` at the defaults uses."""
    from hydra import compose, initialize_config_module

    from align_cli.config import STAGES, register_configs
    from align_cli.pipeline import stage_key

    register_configs()
    with initialize_config_module(config_module="align_cli.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"task={task}"])
    return [f"{stage}/{stage_key(cfg, stage)}" for stage in STAGES]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(tasks: list[str], out: Path) -> int:
    root = cache_root()
    manifest: dict[str, dict] = {}
    for task in tasks:
        for entry in entries_of(task):
            folder = root / entry
            if not (folder / "COMPLETE").is_file():
                continue  # a stage this task does not build (the tree has no reward model)
            info = json.loads((folder / "info.json").read_text()) if (folder / "info.json").is_file() else {}
            figures = {k: v for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            manifest[entry] = {"task": task, "figures": figures,
                               "files": {p.name: digest(p) for p in sorted(folder.iterdir()) if p.is_file()}}
    if not manifest:
        raise ValueError(f"no cache entry of {', '.join(tasks)} under {root}: run `align prepare` first")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        blob = json.dumps(manifest, indent=2, sort_keys=True).encode()
        header = tarfile.TarInfo(MANIFEST)
        header.size = len(blob)
        tar.addfile(header, io.BytesIO(blob))
        for entry in manifest:
            tar.add(root / entry, arcname=entry)
    print(f"wrote {out}: {', '.join(manifest)}")
    return 0


def restore(archive: Path) -> int:
    if not archive.is_file():
        raise ValueError(f"no archive {archive}")
    root = cache_root()
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        if MANIFEST not in names:
            raise ValueError(f"{archive}: no {MANIFEST} (not an archive `pinned_build.py save` wrote)")
        manifest = json.loads(tar.extractfile(MANIFEST).read())
        # the keys today's defaults give: an archive without them would leave `align prepare` to build afresh
        saved = {}  # task -> the stages saved for it
        for entry, meta in manifest.items():
            saved.setdefault(meta["task"], set()).add(entry.split("/")[0])
        missing = [entry for task, stages in sorted(saved.items()) for entry in entries_of(task)
                   if entry.split("/")[0] in stages and entry not in manifest]
        if missing:
            raise ValueError(f"{archive} lacks {', '.join(missing)}: a default that feeds the build (or the cache "
                             "version) changed since it was saved; `align prepare` would build afresh. Save a new "
                             "archive (and rerun what used the old one)")
        staging = root / f".pinned-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        tar.extractall(staging, members=[m for m in tar.getmembers() if m.name != MANIFEST], filter="data")
    try:
        for entry, meta in manifest.items():  # every entry checked before any is put in place
            unpacked = staging / entry
            if not unpacked.is_dir() or {p.name: digest(p) for p in sorted(unpacked.iterdir())
                                         if p.is_file()} != meta["files"]:
                raise ValueError(f"{archive}: {entry} does not match its manifest (a damaged archive)")
        for entry, meta in manifest.items():
            unpacked = staging / entry
            target = root / entry
            if target.is_dir():
                if {p.name: digest(p) for p in sorted(target.iterdir()) if p.is_file()} == meta["files"]:
                    print(f"{entry}: the pinned build is already in the cache")
                    continue
                aside = target.with_name(f"{target.name}.local-{time.strftime('%Y%m%d-%H%M%S')}")
                target.rename(aside)
                print(f"{entry}: a local build of this key moved aside to {aside.name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            unpacked.rename(target)
            print(f"{entry}: restored the pinned build ({meta['task']})")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    save_parser = sub.add_parser("save", help="archive the cache entries of each task's default config")
    save_parser.add_argument("--tasks", default="sentiment,tree", help="comma-separated tasks")
    save_parser.add_argument("--out", type=Path, default=DEFAULT_ARCHIVE, help="the archive to write")
    restore_parser = sub.add_parser("restore", help="put the archive's entries into the cache")
    restore_parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="the archive to read")
    args = parser.parse_args(argv)
    try:
        if args.command == "save":
            return save([t for t in args.tasks.split(",") if t], args.out)
        return restore(args.archive)
    except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
        print(f"pinned_build: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
