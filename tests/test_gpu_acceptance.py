"""The GPU acceptance run (bench/gpu_acceptance.py): its CPU dry run end to end, and its clear refusals."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from sdlab.core.io import read_jsonl

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_acceptance.py"


@pytest.fixture(scope="module")
def acceptance():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry_run(acceptance, tmp_path_factory):
    work = tmp_path_factory.mktemp("acceptance")
    return acceptance.main(["--dry-run", "--work", str(work)]), work


def test_dry_run_trains_grpo_and_sdpo_at_the_study_vocabulary_and_records_the_ratio(dry_run):
    report, tmp_path = dry_run
    assert json.loads((tmp_path / "gpu_acceptance.json").read_text()) == report
    assert report["vocab_size"] == 151_936 and report["vllm"] is False
    for method in ("grpo", "sdpo"):
        run = report["runs"][method]
        assert run["steps"] == 2 and len(run["step_s"]) == 2 and run["median_step_s"] > 0
        assert run["groups_with_success"] == 0.5  # one group of two holds a success in every batch
        assert [row["step"] for row in read_jsonl(tmp_path / method / "metrics.jsonl")] == [1, 2]
    assert report["sdpo_over_grpo_step_time"] == pytest.approx(report["runs"]["sdpo"]["median_step_s"] / report["runs"]["grpo"]["median_step_s"], abs=1e-3)
    audit = read_jsonl(tmp_path / "sdpo" / "teacher_audit.jsonl")
    assert any(record["active"] for record in audit)  # SDPO distilled on the solvable group


def test_tokenizer_fills_the_vocabulary_so_any_sampled_id_decodes(dry_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = AutoModelForCausalLM.from_pretrained(dry_run[1] / "model"), AutoTokenizer.from_pretrained(dry_run[1] / "model")
    assert model.config.model_type == "qwen3" and model.get_input_embeddings().num_embeddings == len(tokenizer) == 151_936
    ids = torch.randint(0, len(tokenizer), (300,), generator=torch.Generator().manual_seed(0)).tolist()
    assert isinstance(tokenizer.decode(ids), str)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_asking_for_vllm_without_it_is_a_one_line_error(acceptance, tmp_path):
    with pytest.raises(SystemExit, match="vLLM is not installed") as exit_:
        acceptance.main(["--work", str(tmp_path)])
    assert "\n" not in str(exit_.value)
    assert list(tmp_path.iterdir()) == []  # nothing built


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_without_a_gpu_the_full_run_is_a_one_line_error(acceptance, tmp_path):
    with pytest.raises(SystemExit, match="no CUDA device"):
        acceptance.main(["--no-vllm", "--work", str(tmp_path)])
