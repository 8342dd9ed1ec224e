"""`python -m dispatcher.sim --port 0 ...`: the simulator standalone."""

from __future__ import annotations

import sys

from dispatcher.sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
