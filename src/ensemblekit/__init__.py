"""ensemblekit: cheap, ensemble-like uncertainty estimation centred on Masksembles."""

from .layers import Masksembles, Masksembles1d, Masksembles2d, Masksembles3d
from .masks import generate_masks, mask_stats
from .members import repeat_members, split_members

__version__ = "0.1.0"

__all__ = [
    "Masksembles",
    "Masksembles1d",
    "Masksembles2d",
    "Masksembles3d",
    "generate_masks",
    "mask_stats",
    "repeat_members",
    "split_members",
]
