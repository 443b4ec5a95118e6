"""Shared fixtures: tiny random-weight chat models built once per test session (about a second).

Tests load them like any hub model: `AutoModelForCausalLM.from_pretrained(tiny_model_dir)`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.tiny import build_tiny_model

# Tiny models are dominated by per-op overhead: on the 2-core CI/dev machine, and whenever
# other processes compete for the cores, two intra-op threads made generation ~10x slower
# than one (bench/generation_throughput.py, docs/measurements.md).
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "math"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen2ForCausalLM (hidden 64, 2 layers, tied embeddings) with a Qwen3-style chat template."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen2"), arch="qwen2")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model as a LlamaForCausalLM, for code that must not assume Qwen."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_llama"), arch="llama")


@pytest.fixture(scope="session")
def math_eval_dir() -> Path:
    """The shared evaluation parquet files (aime24, aime25, amc23, math500)."""
    path = SHARED_DATA / "evaluation"
    if not path.is_dir():
        pytest.skip(f"{path} not found (the shared math data sits beside the repository)")
    return path


@pytest.fixture
def problems_file(tmp_path) -> Path:
    """Eight one-digit sums in the JSONL problem format."""
    path = tmp_path / "problems.jsonl"
    rows = [{"id": f"p{i}", "question": f"What is {i} + {i}? Put the answer in \\boxed{{}}.", "answer": str(2 * i)} for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
