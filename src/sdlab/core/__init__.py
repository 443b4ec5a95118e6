"""Shared building blocks: problems and data loading, grading, epistemic markers, teacher contexts,
losses, statistics and file I/O. Nothing here imports a trainer."""
