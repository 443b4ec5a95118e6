"""SFT data collection (D_ug / D_sg) and SFT training on the collected traces."""

from __future__ import annotations

import json

import pytest

from sdlab import SdlabError
from sdlab.core.io import read_jsonl
from sdlab.core.problem import Problem
from sdlab.evaluation.generation import Completion, SamplingParams, make_generator
from sdlab.training.sft import collect_traces, load_sft_dataset, progress_path


class ScriptedSolver:
    """Generator that answers correctly only when told the solution (what a weak model does on
    hard problems): the random tiny model never answers correctly, so it cannot exercise the
    keep-a-correct-trace path."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.prompts: list[str] = []

    def generate(self, prompts, params, *, enable_thinking=None):
        groups = []
        for messages in prompts:
            text = messages[-1]["content"]
            self.prompts.append(text)
            question = text.split("\n\nCorrect solution:")[0]
            right = "Correct solution:" in text
            reply = f"<think>ok</think>\\boxed{{{self.answers[question] if right else 'wrong'}}}"
            groups.append([Completion(text=reply, token_ids=[1], num_tokens=1, finished=True)] * params.n)
        return groups


def problems(n: int, *, with_solution: bool) -> list[Problem]:
    return [Problem.from_question(f"p{i}", f"What is {i}+{i}?", str(2 * i), solution=f"It is {2 * i}." if with_solution else None) for i in range(n)]


def test_guided_traces_keep_the_response_and_drop_the_context(tmp_path):
    items = problems(3, with_solution=True)
    solver = ScriptedSolver({p.question: p.answer for p in items})
    out = tmp_path / "d_sg.jsonl"
    count = collect_traces(solver, items, mode="guided", n_correct=3, out=out, sampling=SamplingParams(n=2))
    rows = read_jsonl(out)
    assert count == 3 and [r["id"] for r in rows] == ["p0", "p1", "p2"]
    assert rows[1]["messages"] == [{"role": "user", "content": "What is 1+1?"}, {"role": "assistant", "content": "<think>ok</think>\\boxed{2}"}]
    assert all(r["mode"] == "guided" for r in rows)
    # The model saw the study's hint template with the reference solution.
    assert solver.prompts[0] == "What is 0+0?\n\nCorrect solution: It is 0.\n\nCorrectly solve the original question."


def test_unguided_traces_are_the_conditioning_solutions_on_the_guided_problems(tmp_path):
    """The study's D_ug: the solution s itself, for the problems D_sg conditions on s."""
    items = problems(4, with_solution=True)
    solver = ScriptedSolver({p.question: p.answer for p in items})
    assert collect_traces(solver, items, mode="unguided", n_correct=4, out=tmp_path / "d_ug.jsonl", sampling=SamplingParams(n=2)) == 4
    assert solver.prompts == []  # the reference solutions: nothing to sample
    rows = read_jsonl(tmp_path / "d_ug.jsonl")
    assert [r["messages"][-1]["content"] for r in rows] == [p.solution for p in items] and all(r["mode"] == "unguided" for r in rows)
    collect_traces(solver, items, mode="guided", n_correct=4, out=tmp_path / "d_sg.jsonl", sampling=SamplingParams(n=2))
    assert [r["id"] for r in read_jsonl(tmp_path / "d_sg.jsonl")] == [r["id"] for r in rows]


def test_unguided_without_reference_keeps_an_own_correct_sample_only(tmp_path):
    items = problems(3, with_solution=False)
    solver = ScriptedSolver({p.question: p.answer for p in items})  # never correct without the solution
    assert collect_traces(solver, items, mode="unguided", n_correct=3, out=tmp_path / "d_ug.jsonl", sampling=SamplingParams(n=2)) == 0
    assert len(solver.prompts) == 3 and read_jsonl(tmp_path / "d_ug.jsonl") == []


def test_guided_without_reference_uses_an_own_correct_response(tmp_path):
    """No reference solution and no correct unguided sample: nothing to put in context, skipped."""
    items = problems(2, with_solution=False)
    solver = ScriptedSolver({p.question: p.answer for p in items})
    assert collect_traces(solver, items, mode="guided", n_correct=2, out=tmp_path / "d.jsonl", sampling=SamplingParams(n=1)) == 0
    assert all("Correct solution" not in p for p in solver.prompts)


def test_collection_resumes_without_retrying_problems(tmp_path):
    items = problems(6, with_solution=True)
    solver = ScriptedSolver({p.question: p.answer for p in items})
    out = tmp_path / "d.jsonl"
    assert collect_traces(solver, items, mode="guided", n_correct=2, out=out, sampling=SamplingParams(n=1), problems_per_batch=2) == 2
    assert json.loads(progress_path(out).read_text())["tried"] == ["p0", "p1"]
    solver.prompts.clear()
    assert collect_traces(solver, items, mode="guided", n_correct=5, out=out, sampling=SamplingParams(n=1), problems_per_batch=2) == 5
    assert [r["id"] for r in read_jsonl(out)] == ["p0", "p1", "p2", "p3", "p4"]
    assert not any(p.startswith(("What is 0+0", "What is 1+1")) for p in solver.prompts)


def test_real_model_collection_records_tried_problems(tiny_model_dir, tmp_path):
    generator = make_generator(str(tiny_model_dir), backend="transformers")
    out = tmp_path / "d_ug.jsonl"
    collect_traces(generator, problems(2, with_solution=False), mode="unguided", n_correct=2, out=out, sampling=SamplingParams(n=2, max_new_tokens=8))
    assert json.loads(progress_path(out).read_text())["tried"] == ["p0", "p1"]


def test_sft_dataset_masks_the_prompt(tmp_path, tiny_model_dir):
    """Prompt-completion format: TRL's collator trains on the assistant turn only."""
    from sdlab.training.sft import build_sft_trainer

    path = tmp_path / "traces.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"What is {i}+{i}?"}, {"role": "assistant", "content": f"<think>add</think>\\boxed{{{2 * i}}}"}]} for i in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = load_sft_dataset(path)
    args = dict(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3, use_cpu=True, bf16=False, report_to=[], save_strategy="no", max_length=128)
    trainer = build_sft_trainer(model=str(tiny_model_dir), dataset=dataset, args=args, callbacks=[])
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    trained = trainer.processing_class.decode(ids[labels != -100])
    assert trained.startswith("<think>add</think>\\boxed{0}") and "What is" not in trained
    assert trained.rstrip().endswith("<|im_end|>")  # the model learns to stop
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert any(not (a == b.detach()).all() for a, b in zip(before, trainer.model.parameters()))


def test_sft_dataset_rejects_rows_without_an_assistant_turn(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(SdlabError, match="line 1"):
        load_sft_dataset(path)


def test_sdlab_train_runs_sft_on_collected_traces(tmp_path, tiny_model_dir):
    from sdlab.config.checks import load_train_config
    from sdlab.training.run import run_training

    traces = tmp_path / "d_ug.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"What is {i}+{i}?"}, {"role": "assistant", "content": f"<think>wait</think>\\boxed{{{2 * i}}}"}]} for i in range(8)]
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    overrides = ["method=sft", f"model={tiny_model_dir}", f"output_dir={out}", f"sft.dataset={traces}", "steps=50", "sft.epochs=1", "batch=4", "lr=1e-3", "save_steps=1"]
    summary = run_training(load_train_config(None, overrides))
    metrics = read_jsonl(out / "metrics.jsonl")
    assert summary["steps"] == 2 == len(metrics)  # one epoch of 8 examples at 4 per step, before `steps`
    assert metrics[0]["loss"] > metrics[-1]["loss"] > 0
    assert (out / "checkpoint-2" / "model.safetensors").is_file() and (out / "model" / "model.safetensors").is_file()
