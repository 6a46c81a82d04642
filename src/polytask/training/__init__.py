"""Training: the one engine every strategy trains through, per-task gradients, task sampling
and fine-tuning's schedule around the engine."""
