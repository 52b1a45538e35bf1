"""Training: a task-agnostic fit loop, checkpoints, data-parallel runs."""
