"""Agent backends. `base` holds the protocol and boundary models every backend shares;
`embedded` is the offline Optuna backend (imported from its module, so other backends don't load
Optuna)."""

from labgap.agents.base import Agent, ForumPost, Proposal, describe_method

__all__ = ["Agent", "ForumPost", "Proposal", "describe_method"]
