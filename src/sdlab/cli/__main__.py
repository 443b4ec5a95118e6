"""`python -m sdlab.cli` (as `accelerate launch -m sdlab.cli` runs it)."""

from sdlab.cli import main

main()
