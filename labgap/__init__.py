"""labgap: does a weak-to-strong breakthrough found in the lab survive the move to production?"""

import os

# OpenMP's default lets idle torch threads spin; on a shared, busy machine a 2-thread student then
# took 40 s instead of 3.7 s (measured). Passive waiting changes no number, only the waiting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
