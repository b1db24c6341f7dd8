"""`anyppg probe`: frozen-embedding probes of PPG encoders on downstream tasks.

    from training.probe import main, load_embedder, resolve_tasks
    main(["--encoder", "random:net1d-small", "--tasks", "synthetic", "--out", "runs/probe"])

Modules: tasks (registry), protocol (grouped CV ridge / logistic, subject bootstrap),
embedders (run folders, checkpoints, random init; pluggable loaders), baselines (classical
signal processing), stores (prepared through training.data.build, loaded once), runner (one
task), report (probe.md, plots, predictions), plots, main (CLI; `--diagnoses TABLE` goes to
diagnoses).
"""
from .embedders import FunctionEmbedder, SeenData, load_embedder, register_loader
from .main import main
from .tasks import TASKS, Task, resolve_tasks

__all__ = ["main", "load_embedder", "register_loader", "FunctionEmbedder", "SeenData", "TASKS",
           "Task", "resolve_tasks"]
