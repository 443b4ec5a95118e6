"""Experiments over many runs: sweeps (grids of training runs), their result tables, the demo."""
