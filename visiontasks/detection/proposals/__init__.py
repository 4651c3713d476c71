"""Region proposals as data: external proposers (selective search) and the proposer module that
passes precomputed proposals into a two-stage detector (Fast R-CNN, SPP-net, R-CNN)."""
from visiontasks.detection.proposals.precomputed import PrecomputedProposals

__all__ = ["PrecomputedProposals"]
