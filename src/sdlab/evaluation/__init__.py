"""Sampling replies (transformers or vLLM) and scoring them as the study does (avg@k, pass@k)."""
