"""The named starting points of a study's sizes: `quick`, `default` and `full`.

Kept apart from the configuration model so the sizes a profile decides can be read (and compared
in the README's profile table) in one place.
"""

from typing import Any

HELDOUT = ["bbc-heldout", "digits-heldout"]
PRODUCTION = ["rt-long-recipe", "rt-noisy-teacher"]

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "n_agents": 3,
        "rounds": 2,
        "proposals_per_round": 1,
        "quick_seeds": 2,
        "confirmation_seeds": 4,
        "design": "sequential",
        "seeds_per_look": 4,
        "max_seeds": 16,
        "replication_budget": 150,
        "heldout_tasks": HELDOUT,
        "production_targets": ["rt-noisy-teacher"],
    },
    "default": {
        "n_agents": 9,
        "rounds": 3,
        "proposals_per_round": 1,
        "quick_seeds": 2,
        "confirmation_seeds": 6,
        "design": "sequential",
        "seeds_per_look": 4,
        "max_seeds": 18,
        "replication_budget": 150,
        "heldout_tasks": HELDOUT,
        "production_targets": PRODUCTION,
    },
    "full": {
        "n_agents": 9,
        "rounds": 6,
        "proposals_per_round": 2,
        "quick_seeds": 3,
        "confirmation_seeds": 12,
        "design": "sequential",
        "seeds_per_look": 6,
        "max_seeds": 36,
        "replication_budget": 500,
        "heldout_tasks": HELDOUT,
        "production_targets": PRODUCTION,
    },
}
"""Every profile decides every one of these fields; a field given explicitly wins."""
