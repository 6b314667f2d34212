"""Core objects shared by every technique and target: tasks, data, registries, run folders."""
