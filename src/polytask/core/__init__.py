"""The base everything stands on: errors, registries, atomic writes, content digests,
metrics and what a task predicts. Imports no other polytask layer."""
