"""Fine-tuning tools: regularizers toward the starting weights, recipes (which layers
train, layer-wise rates, gradual unfreezing, frozen BatchNorm) and LoRA."""
