"""labgap: does a weak-to-strong breakthrough found in the lab survive the move to production?"""

__version__ = "0.1.0"
