"""After the comparison: train one run's model and keep it (a model directory)."""
