"""`anyppg probe`: frozen-embedding probes of PPG encoders on downstream tasks.

    from training.probe import main, load_embedder, resolve_tasks
    main(["--encoder", "random:net1d-small", "--tasks", "synthetic", "--out", "runs/probe"])

Modules: tasks (registry), protocol (grouped CV ridge / logistic, subject bootstrap),
embedders (run folders, checkpoints, random init; pluggable loaders), baselines (classical
signal processing), plots, main (CLI).
"""
from .embedders import FunctionEmbedder, SeenData, load_embedder, register_loader
from .main import main
from .tasks import TASKS, Task, resolve_tasks

__all__ = ["main", "load_embedder", "register_loader", "FunctionEmbedder", "SeenData", "TASKS",
           "Task", "resolve_tasks"]
