"""Ensemble layers in torch.nn style, reading the member-major batch layout."""

from .masksembles import Masksembles, Masksembles1d, Masksembles2d, Masksembles3d

__all__ = ["Masksembles", "Masksembles1d", "Masksembles2d", "Masksembles3d"]
