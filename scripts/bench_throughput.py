"""Update throughput (perf/tokens_per_s: response tokens through one gradient update per second of update
time, sampling and evals excluded) of `align train` variants, measured side by side.

    python scripts/bench_throughput.py [--repeats 3] [--steps 40] "algo=sac" "algo=sac algo.critic=heads"

Each variant is one string of overrides. Runs are interleaved (variant 1, 2, ..., then again) so a slow
spell of the machine hits every variant alike; prints the median and every repeat per variant, and the
ratio of each median to the first variant's. Runs go to a temp dir with logger=none and the shared cache.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from align_cli.analysis import find_runs  # noqa: E402


def align_executable() -> str:
    """The console script next to this interpreter (a venv's bin/), else `align` on PATH."""
    beside = Path(sys.executable).parent / "align"
    return str(beside) if beside.exists() else "align"


def run_once(overrides: str, steps: int, runs_dir: Path) -> float:
    command = [align_executable(), "train", *shlex.split(overrides), f"budget.max_steps={steps}", "eval.every=1000000",
               "logger=none", f"paths.runs_dir={runs_dir}"]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {shlex.join(command)}\n{done.stderr[-2000:]}")
    (run,) = find_runs([runs_dir])
    value = run.last("perf/tokens_per_s")
    if value is None:
        sys.exit(f"{shlex.join(command)} logged no perf/tokens_per_s")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="override strings, one per variant")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (median reported)")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    args = parser.parse_args()
    results: dict[str, list[float]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory(prefix="align-bench-") as tmp:
        for repeat in range(args.repeats):
            for i, variant in enumerate(args.variants):
                value = run_once(variant, args.steps, Path(tmp) / f"r{repeat}v{i}")
                results[variant].append(value)
                print(f"repeat {repeat} | {variant}: {value:.0f} tokens/s", file=sys.stderr, flush=True)
    first = statistics.median(results[args.variants[0]])
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, steps per run {args.steps}")
    print("| variant | median tokens/s | runs | ratio to first |")
    print("| --- | --- | --- | --- |")
    for variant, values in results.items():
        median = statistics.median(values)
        print(f"| {variant} | {median:.0f} | {', '.join(f'{v:.0f}' for v in values)} | {median / first:.2f} |")


if __name__ == "__main__":
    main()
