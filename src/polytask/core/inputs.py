"""The input shape a backbone is told for a text task."""

from __future__ import annotations

# A text task's samples are strings, which each text backbone tokenizes itself
# (:mod:`polytask.methods.backbones.text`), so its "shape" is this marker.
TEXT_SHAPE: tuple = ("text",)
