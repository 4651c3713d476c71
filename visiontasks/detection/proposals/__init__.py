"""Region proposals: external proposers (selective search), their precomputation over a split,
and the proposer module that passes precomputed proposals into a two-stage detector (Fast R-CNN,
SPP-net, R-CNN).

The proposals on disk are data: their store (manifest, one ``.npy`` per image) lives in
:mod:`visiontasks.data.proposals`; its names are re-exported here for the proposers that write it.
"""
from visiontasks.detection.proposals.precomputed import PrecomputedProposals
from visiontasks.detection.proposals.selective_search import (DEFAULT_PROPOSER, PROPOSAL_METHODS, proposal_params,
                                                               propose, selective_search)
from visiontasks.data.proposals import (MANIFEST_FORMAT, ProposalStore, check_params, proposals_path, read_manifest,
                                        read_proposals, read_timing, write_manifest, write_proposals, write_timing)

__all__ = [
    "DEFAULT_PROPOSER", "MANIFEST_FORMAT", "PROPOSAL_METHODS", "PrecomputedProposals", "ProposalStore", "check_params",
    "proposal_params", "proposals_path", "propose", "read_manifest", "read_proposals", "read_timing",
    "selective_search", "write_manifest", "write_proposals", "write_timing",
]
