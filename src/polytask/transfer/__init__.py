"""Transfer learning: scores and tools for choosing and adapting a pretrained model."""
