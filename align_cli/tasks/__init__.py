"""Tasks: explicit name -> class list (no auto-discovery)."""

from align_cli.tasks.base import Task


def make_task(cfg) -> Task:
    from align_cli.tasks.hf_prefs import HFPrefsTask
    from align_cli.tasks.sentiment import SentimentTask
    from align_cli.tasks.tree import TreeTask

    tasks = {"sentiment": SentimentTask, "tree": TreeTask, "hf_prefs": HFPrefsTask}
    return tasks[cfg.name](cfg)
