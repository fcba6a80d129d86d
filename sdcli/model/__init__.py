"""From a model name to a loaded pipeline: sources, checkpoints, adapters, schedulers, devices."""
