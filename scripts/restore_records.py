"""Put the runs of a records file (`align compare --records`) back as run dirs, so `resume=auto` skips them.

A long sweep runs over several sessions on machines whose disks do not survive; what survives is the
committed records file (docs/results/frontier/runs.jsonl). Before a sweep continues on a fresh machine,
this script writes each recorded run to `<sweep root>/<its experiment>/<its run dir name>`, with the
files `resume=auto` and `align compare` read (summary.json, metrics.jsonl, .hydra/config.yaml and its copy
run_config.yaml, which a skipped run keeps; no checkpoint), so the re-run sweep runs only the jobs that have
no record yet.

    python scripts/restore_records.py docs/results/frontier/runs.jsonl --into runs
    python scripts/restore_records.py RECORDS... --into ROOT [--experiment frontier]

A run dir that already holds a completed run is left alone (this machine's own run wins).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from align_cli.resume import RUN_CONFIG, completed_summary


def restore(record: dict, root: Path, experiment: str | None) -> Path | None:
    """Write one record as a run dir under `root`; None when it was not written (exists, other experiment)."""
    config, summary = record.get("config") or {}, record.get("summary") or {}
    recorded_experiment = config.get("experiment")
    if experiment is not None and recorded_experiment != experiment:
        return None
    run_dir = root / str(recorded_experiment or "") / record["name"]
    if completed_summary(run_dir) is not None:
        return None
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(config), run_dir / RUN_CONFIG)  # what a skip restores .hydra from
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in record.get("metrics", [])))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")  # last: it marks completion
    return run_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", type=Path, help="records files written by align compare --records")
    parser.add_argument("--into", type=Path, required=True, help="sweep root: runs go to ROOT/<experiment>/<name>")
    parser.add_argument("--experiment", default=None, help="restore only the runs of this experiment")
    args = parser.parse_args(argv)
    restored = kept = 0
    for path in args.records:
        if not path.exists():
            print(f"{path}: no such records file (nothing to restore)", file=sys.stderr)
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                print(f"{path}:{number}: not a JSON record, skipped", file=sys.stderr)
                continue
            if restore(record, args.into, args.experiment) is None:
                kept += 1
            else:
                restored += 1
    print(f"restored {restored} run dirs under {args.into} ({kept} left as they were or of another experiment)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
