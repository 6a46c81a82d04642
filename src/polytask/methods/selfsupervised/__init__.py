"""Self-supervised objectives that train shared layers on unlabelled inputs (a transfer
source learned without labels: ``sources: {ssl: {pretrain: ...}}``).

Each objective is a module with the backbone as ``.backbone`` whose ``forward(x, task)``
returns what the training engine's squared-error loss reads against the targets
``objective.targets(x)``, so pretraining runs through the one engine like every training:

- ``autoencoder``: :class:`Autoencoder`;
- ``masked``: :class:`MaskedAutoencoder`;
- ``simclr``: :class:`SimCLR` (Chen et al., ICML 2020), loss :func:`nt_xent`.
"""

from polytask.methods.selfsupervised.objectives import OBJECTIVES, Autoencoder, MaskedAutoencoder, SimCLR, build_objective, nt_xent

__all__ = ["OBJECTIVES", "Autoencoder", "MaskedAutoencoder", "SimCLR", "build_objective", "nt_xent"]
