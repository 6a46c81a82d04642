"""The methods, in plain PyTorch and free of configuration and studies: loss weighting
(:mod:`~polytask.methods.weighting`), sharing architectures, backbones, domain adaptation,
fine-tuning tools and transferability scores. Each can be used on its own."""
