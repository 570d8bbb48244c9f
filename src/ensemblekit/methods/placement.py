"""Where a masking method acts, and how wide the layers it masks are: ``placement`` and ``widen``.

Masksembles and MC-Dropout both turn drop sites (every hidden activation of a backbone, see
:class:`~ensemblekit.models.LayerFactory`) into their own operation. Two knobs decide how:

* ``placement="all"``: at every drop site; ``placement="dropout"``: only at the drop sites where
  the classic architecture puts Dropout (each backbone marks them ``classic=True``), a plain ReLU
  elsewhere. The Masksembles authors advise the second: masks *instead of* dropout.
* ``widen=True``: every layer feeding a drop site the method acts on is widened by 1/keep, so
  that every member still has the single model's channel count there (the authors: to reach
  the ensemble end of the spectrum "you need to increase the number of channels"). The
  parameter count grows; :func:`ensemblekit.experiments.cost` and the reports state it.

A method may also skip sites too narrow for it (:meth:`DropSites.fits`). The sites it acts on
are recorded in :attr:`DropSites.site_widths`, so the model knows which channel widths carry its
masks.
"""

from __future__ import annotations

from torch import nn

from .._validation import check_choice, check_flag
from ..models.factory import PLACEMENTS, LayerFactory


def check_placement(placement: str, widen: bool) -> tuple[str, bool]:
    """Validate the two knobs (names and values in the error, as everywhere)."""
    return check_choice("placement", placement, PLACEMENTS), check_flag("widen", widen)


class DropSites(LayerFactory):
    """A layer factory whose method acts at the drop sites its placement selects.

    Subclasses give :meth:`operation` (the method's module at a site, ReLU included),
    :meth:`widened` (the widened channel count) and optionally :meth:`fits` (a skip rule).
    """

    def __init__(self, placement: str, widen: bool) -> None:
        self.placement, self.widen = check_placement(placement, widen)
        #: channel widths of the drop sites the method acts on, in construction order
        self.site_widths: list[int] = []

    def acts_at(self, channels: int, *, classic: bool) -> bool:
        """Whether the method acts at a drop site of ``channels`` channels."""
        return (self.placement == "all" or classic) and self.fits(channels)

    def fits(self, channels: int) -> bool:
        """The skip rule: whether ``channels`` channels are enough for the method (default: any)."""
        return True

    def widened(self, channels: int) -> int:
        """The channel count that leaves every member ``channels`` channels of its own."""
        raise NotImplementedError

    def operation(self, channels: int, *, spatial: bool) -> nn.Module:
        """The method's module at a drop site it acts on (it applies the ReLU itself)."""
        raise NotImplementedError

    def site_channels(self, channels: int, *, classic: bool = False) -> int:
        if self.widen and self.acts_at(channels, classic=classic):
            return self.widened(channels)
        return channels

    def drop(self, channels: int, *, spatial: bool = True, classic: bool = False) -> nn.Module:
        if not self.acts_at(channels, classic=classic):
            return nn.ReLU()
        self.site_widths.append(channels)
        return self.operation(channels, spatial=spatial)


def shared_prefix_note(options) -> str:
    """The diversity study's note for a masking method placed only at classic dropout sites:
    the layers before its first mask are the same in every member, so their cosine, and the
    CKA of a representation taken there, is 1 by construction ("" for other placements)."""
    if options.get("placement") != "dropout":
        return ""
    return ("; layers before the first mask shared by every member (cosine 1, and CKA 1 "
            "for a representation taken there)")
