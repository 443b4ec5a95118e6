"""`sdlab train` / `sdlab validate`: recipes fail fast with clear errors; tiny runs write a full run dir."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from sdlab import SdlabError
from sdlab.config.checks import load_train_config
from sdlab.training.args import batch_layout, sft_max_steps, with_checkpointing_name
from sdlab.training.checkpoints import truncate_step_logs


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def recipe(tmp_path, problems_file) -> Path:
    return write_recipe(tmp_path / "grpo.yaml", {"method": "grpo", "model": "organism", "output_dir": str(tmp_path / "run"), "data": {"train": str(problems_file)}})


def error_of(recipe_path, overrides) -> str:
    with pytest.raises(SdlabError) as err:
        load_train_config(recipe_path, overrides)
    return str(err.value)


def test_unknown_key_names_its_full_path(recipe):
    assert "sdpo.alhpa: unknown key" in error_of(recipe, ["sdpo.alhpa=0.5"])


def test_wrong_type_names_the_key(recipe):
    message = error_of(recipe, ["steps=ten"])
    assert "steps:" in message and "integer" in message


def test_unknown_method_and_context_list_the_allowed_values(recipe):
    assert "method: Input should be 'grpo', 'sdpo' or 'sft'" in error_of(recipe, ["method=ppo"])
    message = error_of(recipe, ["method=sdpo", "sdpo.context=hint"])
    assert "sdpo.context" in message and "'solution', 'solution_nothink', 'regenerated' or 'feedback'" in message


def test_missing_data_file_and_model_dir_fail_before_any_work(recipe, tmp_path):
    assert "data.train: 'nowhere.parquet' not found" in error_of(recipe, ["data.train=nowhere.parquet"])
    assert "model: './no-such-model' not found" in error_of(recipe, ["model=./no-such-model"])
    assert "sft.dataset" in error_of(recipe, ["method=sft", f"sft.dataset={tmp_path}/traces.jsonl"])


def test_inconsistent_sections_are_rejected(recipe):
    assert "sft:" in error_of(recipe, ["method=sft"])
    assert "mini_batch" in error_of(recipe, ["batch=8", "mini_batch=3"])
    assert "alpha=1.0" in error_of(recipe, ["method=sdpo", "sdpo.distillation=sampled", "sdpo.alpha=0.5"])
    assert "eval.sources" in error_of(recipe, ["eval.every=5"])


def test_hub_ids_and_organism_specs_pass_offline(recipe):
    config = load_train_config(recipe, ["model=Qwen/Qwen3-8B", "data.train=organism:linmod:64"])
    assert config.model == "Qwen/Qwen3-8B"


def test_validate_refuses_what_the_trainers_would_refuse_later(recipe):
    for method in ("grpo", "sdpo"):
        assert f"method={method} needs rollouts >= 2 (got 1)" in error_of(recipe, [f"method={method}", "rollouts=1"])
    message = error_of(recipe, ["data.train=organism:nope:3"])
    assert "data.train: unknown organism family 'nope'" in message and "linmod" in message
    assert "eval.sources.0: organism spec 'organism:linmod'" in error_of(recipe, ["eval.every=1", "eval.sources=[organism:linmod]"])
    assert "has 671 distinct problems; asked for 100000" in error_of(recipe, ["data.train=organism:linmod:100000"])


def test_study_step_accounting(recipe):
    config = load_train_config(recipe, ["steps=100", "batch=256", "mini_batch=128", "rollouts=8"])
    assert (config.updates_per_step, config.optimizer_steps) == (2, 200)
    assert batch_layout(completions_per_update=128 * 8, micro_batch=2, processes=8) == (2, 64)
    assert batch_layout(completions_per_update=16, micro_batch=None, processes=1) == (16, 1)
    with pytest.raises(SdlabError, match="micro_batch=3"):
        batch_layout(completions_per_update=16, micro_batch=3, processes=1)


def test_sft_stops_at_steps_or_epochs_whichever_first():
    assert sft_max_steps(steps=100, epochs=1.0, examples=40, batch=8) == 5
    assert sft_max_steps(steps=3, epochs=2.0, examples=40, batch=8) == 3


@pytest.mark.parametrize("config_name", ["GRPOConfig", "SFTConfig"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_checkpointing_reaches_trls_config_without_the_deprecation_warning(config_name, checkpointing, tmp_path, recwarn):
    import trl

    config = getattr(trl, config_name)(**with_checkpointing_name({"output_dir": str(tmp_path), "gradient_checkpointing": checkpointing, "use_cpu": True}))
    assert config.gradient_checkpointing is checkpointing  # the old name mirrors the new one
    assert not [w for w in recwarn if "gradient_checkpointing" in str(w.message)]
    assert with_checkpointing_name({"gradient_checkpointing": True, "activation_checkpointing": False}) == {"activation_checkpointing": False}


def test_resume_drops_rows_logged_after_the_checkpoint(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)))
    truncate_step_logs(tmp_path, after_step=2)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


# -- end-to-end runs on the tiny model ----------------------------------------------------------

TIMING_KEYS = {"elapsed_s", "step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


def tiny_overrides(tiny_model_dir, problems_file, out_dir, *extra) -> list[str]:
    return [
        f"model={tiny_model_dir}", f"output_dir={out_dir}", f"data.train={problems_file}",
        "steps=3", "batch=2", "rollouts=2", "max_completion_length=6", "save_steps=1", "lr=1e-2", *extra,
    ]


def distinct_characters(completions, **kwargs) -> list[float]:
    """A dense reward the random tiny model earns (it never writes a correct \\boxed{} answer), so
    that advantages are non-zero, weights change and SDPO finds successful siblings."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [len(set(text)) / max(1, len(text)) for text in texts]


def run(recipe, overrides, **kwargs):
    from sdlab.training.run import run_training

    return run_training(load_train_config(recipe, overrides), reward_funcs=distinct_characters, **kwargs)


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


@pytest.mark.parametrize("method", ["grpo", "sdpo"])
def test_tiny_run_writes_metrics_samples_checkpoints_and_summary(method, recipe, tiny_model_dir, problems_file, tmp_path):
    from sdlab.core.io import read_jsonl

    out = tmp_path / method
    summary = run(recipe, tiny_overrides(tiny_model_dir, problems_file, out, f"method={method}", "sdpo.distillation=full"))
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for field in ("reward_mean", "response_tokens_mean", "markers_per_response", "markers_per_1k_tokens", "early_warning_step"):
        assert field in rows[-1]
    assert rows[0]["response_tokens_mean"] > 0 and rows[0]["reward_mean"] > 0
    assert (out / "checkpoint-3" / "model.safetensors").is_file() and (out / "checkpoint-3" / "rng_state.pth").is_file()
    assert (out / "model" / "model.safetensors").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["method"] == method
    assert "trl" in json.loads((out / "versions.json").read_text())
    assert read_jsonl(out / "samples.jsonl")[0]["step"] == 1
    saved = json.loads((out / "summary.json").read_text())
    assert saved["steps"] == summary["steps"] == 3 and saved["wall_time_s"] > 0
    if method == "sdpo":
        assert (out / "teacher_audit.txt").read_text().startswith("== step 0")
        assert any(r["divergence_mean"] is not None for r in rows)  # the teacher had successful siblings


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU_RECIPE = Path(__file__).parent.parent / "recipes" / "models" / "qwen3-8b" / "sdpo.yaml"


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["grpo", "sdpo"])
def test_tiny_run_trains_on_cuda_in_bf16(method, recipe, tiny_model_dir, problems_file, tmp_path):
    from sdlab.core.io import read_jsonl

    out = tmp_path / method
    torch.cuda.reset_peak_memory_stats()
    run(recipe, tiny_overrides(tiny_model_dir, problems_file, out, f"method={method}", "runtime.use_cpu=false", "runtime.bf16=true"))
    assert torch.cuda.max_memory_allocated() > 0  # the trainer put the model on the GPU
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["loss"] == r["loss"] for r in rows)  # no NaN
    assert (out / "model" / "model.safetensors").is_file()


@pytest.mark.gpu
@needs_cuda
def test_shipped_gpu_recipe_runs_on_cuda_without_vllm(tiny_model_dir, problems_file, tmp_path):
    """The real-model recipe's own runtime (bf16, gradient checkpointing, micro-batches) and loss
    (top-k + tail, two updates per generation batch) on a tiny model; vLLM and ZeRO-3 left out."""
    from sdlab.core.io import read_jsonl

    out = tmp_path / "run"
    overrides = [
        f"model={tiny_model_dir}", f"output_dir={out}", f"data.train={problems_file}", "steps=1", "batch=2", "mini_batch=1", "rollouts=2",
        "max_prompt_length=64", "max_completion_length=6", "sdpo.max_teacher_prompt_length=128", "eval.every=0", "runtime.vllm.enabled=false", "runtime.micro_batch=2",
    ]
    summary = run(GPU_RECIPE, overrides)
    assert summary["steps"] == 2  # one generation batch, two optimizer updates
    assert all(r["loss"] == r["loss"] for r in read_jsonl(out / "metrics.jsonl"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")
def test_gpu_recipe_on_a_cpu_machine_names_the_overrides_before_any_work(tiny_model_dir, problems_file, tmp_path):
    out = tmp_path / "run"
    # Its evaluation sets are the study's files beside the checkout; this test is about the device check.
    overrides = [f"model={tiny_model_dir}", f"output_dir={out}", f"data.train={problems_file}", "eval.sources=[]"]
    with pytest.raises(SdlabError, match="no CUDA device.*runtime.use_cpu=true runtime.bf16=false runtime.vllm.enabled=false"):
        run(GPU_RECIPE, overrides)
    with pytest.raises(SdlabError, match="needs vLLM"):
        run(GPU_RECIPE, [*overrides, "runtime.use_cpu=true", "runtime.bf16=false"])
    assert not out.exists()


def test_existing_run_is_not_overwritten_without_force(recipe, tiny_model_dir, problems_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(SdlabError, match="--force"):
        run(recipe, tiny_overrides(tiny_model_dir, problems_file, out))
    assert (out / "metrics.jsonl").read_text() == '{"step": 1}\n'


def test_a_refused_run_leaves_no_run_directory_so_the_fixed_rerun_starts(recipe, tiny_model_dir, problems_file, tmp_path):
    from sdlab.core.data import DataError

    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"question": "1+1?", "answer": "2"}\n{"question": "caf\xe9?", "answer": "3"}\n')
    out = tmp_path / "run"
    with pytest.raises(DataError, match=r"latin1.jsonl: row 1 \(0-based; line 2\): not valid UTF-8 \(byte 0xe9 at column 18\)"):
        run(recipe, tiny_overrides(tiny_model_dir, bad, out))
    assert not out.exists()  # no config.yaml / versions.json to refuse the rerun
    assert run(recipe, tiny_overrides(tiny_model_dir, problems_file, out))["steps"] == 3


def test_a_hub_model_with_an_unreachable_hub_fails_at_once_and_leaves_no_run_directory(recipe, problems_file, tmp_path, monkeypatch):
    import time

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    out = tmp_path / "run"
    start = time.monotonic()
    with pytest.raises(SdlabError, match=r"someone/no-such-model: not a local model directory, and the Hugging Face hub \(http://127.0.0.1:9\) cannot be reached"):
        run(recipe, ["model=someone/no-such-model", f"output_dir={out}", f"data.train={problems_file}", "steps=1", "batch=2", "rollouts=2"])
    assert time.monotonic() - start < 5 and not out.exists()


def test_resume_refuses_a_changed_recipe(recipe, tiny_model_dir, problems_file, tmp_path):
    from sdlab.config import dump_config

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text(dump_config(load_train_config(recipe, tiny_overrides(tiny_model_dir, problems_file, out))))
    with pytest.raises(SdlabError, match="different config"):
        run(recipe, tiny_overrides(tiny_model_dir, problems_file, out, "lr=0.5"), resume=True)


class CrashAfter:
    """Simulates a killed run: raises right after optimizer update `step` (before it is saved)."""

    def __new__(cls, step: int):
        from transformers import TrainerCallback

        class _Crash(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == step:
                    raise KeyboardInterrupt

        return _Crash()


@pytest.mark.parametrize("method", [["method=grpo"], ["method=sdpo", "sdpo.teacher=ema", "sdpo.ema_rate=0.5", "sdpo.distillation=full"]], ids=["grpo", "sdpo-ema"])
def test_killed_run_resumes_to_the_same_metrics(method, recipe, tiny_model_dir, problems_file, tmp_path):
    """Checkpoint after every step; crash in step 3 (checkpoint-2 exists); --resume must end
    exactly where the uninterrupted run ended: RNG (sampling included), data order, optimizer
    state and the EMA teacher are restored, and the rows logged after checkpoint-2 are replaced."""
    from sdlab.core.io import read_jsonl

    overrides = lambda out: tiny_overrides(tiny_model_dir, problems_file, out, "steps=4", "temperature=1.0", *method)  # noqa: E731
    run(recipe, overrides(tmp_path / "full"))
    with pytest.raises(KeyboardInterrupt):
        run(recipe, overrides(tmp_path / "cut"), extra_callbacks=[CrashAfter(3)])
    assert not (tmp_path / "cut" / "checkpoint-3").exists()
    summary = run(recipe, overrides(tmp_path / "cut"), resume=True)
    assert summary["resumed_from"] == "checkpoint-2"
    full, cut = read_jsonl(tmp_path / "full" / "metrics.jsonl"), read_jsonl(tmp_path / "cut" / "metrics.jsonl")
    assert [r["step"] for r in cut] == [1, 2, 3, 4]
    assert comparable(cut) == comparable(full)
    assert len({r["loss"] for r in full}) > 1 and any(r["grad_norm"] for r in full)  # it really trained
    assert read_jsonl(tmp_path / "cut" / "samples.jsonl") == read_jsonl(tmp_path / "full" / "samples.jsonl")
    elapsed = [r["elapsed_s"] for r in cut]  # the clock goes on across the sittings
    assert elapsed == sorted(elapsed) and summary["wall_time_s"] == elapsed[-1] > elapsed[1]


def test_run_killed_after_its_last_checkpoint_resumes_without_training_again(recipe, tiny_model_dir, problems_file, tmp_path):
    """A kill between the final checkpoint and the final model: --resume only writes the model
    and the summary (transformers would otherwise run one step past max_steps)."""
    from safetensors.torch import load_file

    from sdlab.core.io import read_jsonl

    out = tmp_path / "run"
    overrides = tiny_overrides(tiny_model_dir, problems_file, out, "method=grpo")
    run(recipe, overrides)
    shutil.rmtree(out / "model")
    (out / "summary.json").unlink()
    before = (out / "metrics.jsonl").read_text()
    summary = run(recipe, overrides, resume=True)
    assert summary["resumed_from"] == "checkpoint-3" and summary["steps"] == 3
    assert (out / "metrics.jsonl").read_text() == before and [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]
    assert not (out / "checkpoint-4").exists()
    final, last = load_file(out / "model" / "model.safetensors"), load_file(out / "checkpoint-3" / "model.safetensors")
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    assert (out / "model" / "tokenizer_config.json").is_file()


def test_resume_refuses_a_rebuilt_organism(recipe, tiny_model_dir, problems_file, tmp_path):
    """`model: organism` names whatever build is cached; resuming on another build would mix weights."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "build.json").write_text(json.dumps({"settings_hash": "first"}))
    out = tmp_path / "run"
    overrides = tiny_overrides(model, problems_file, out, "method=grpo")
    with pytest.raises(KeyboardInterrupt):
        run(recipe, overrides, extra_callbacks=[CrashAfter(2)])
    assert json.loads((out / "model_build.json").read_text())["settings_hash"] == "first"
    (model / "build.json").write_text(json.dumps({"settings_hash": "second"}))
    with pytest.raises(SdlabError, match="model build first"):
        run(recipe, overrides, resume=True)


# -- the study's optimiser, as TRL sees it ------------------------------------------------------


def test_bad_optimiser_settings_name_the_key(recipe):
    assert "scale_rewards" in error_of(recipe, ["scale_rewards=std"]) and "'none', 'group' or 'batch'" in error_of(recipe, ["scale_rewards=std"])
    assert "epsilon_high" in error_of(recipe, ["epsilon_high=-0.1"])
    assert "importance_sampling_cap" in error_of(recipe, ["importance_sampling_cap=0.5"])
    assert "constant_with_warmup" in error_of(recipe, ["lr_scheduler=constant", "warmup_steps=10"])
    assert "loss_type" in error_of(recipe, ["loss_type=ppo"])


@pytest.mark.parametrize("method", ["grpo", "sdpo"])
def test_the_studys_optimiser_reaches_trls_trainer(method, recipe, tiny_model_dir, problems_file, tmp_path):
    from sdlab.training.run import build_trainer

    overrides = tiny_overrides(tiny_model_dir, problems_file, tmp_path / "run", f"method={method}", "batch=4", "mini_batch=2", "lr=1e-3")
    config = load_train_config(recipe, overrides)
    trainer = build_trainer(config, model_path=str(tiny_model_dir), run_dir=tmp_path / "run", callbacks=[], show_teacher=0)
    args = trainer.args
    assert (args.scale_rewards, args.epsilon, args.epsilon_high, args.loss_type) == ("none", 0.2, 0.28, "grpo")
    assert (trainer.scale_rewards, trainer.epsilon_low, trainer.epsilon_high, trainer.loss_type) == ("none", 0.2, 0.28, "grpo")
    assert (args.weight_decay, args.lr_scheduler_type, args.warmup_steps) == (0.01, "constant_with_warmup", 20)  # 10 steps x 2 updates
    if method == "grpo":
        assert (args.vllm_importance_sampling_correction, args.vllm_importance_sampling_mode, args.vllm_importance_sampling_clip_max) == (True, "token_truncate", 2.0)
    else:
        assert (args.distillation_is_clip, args.distillation_reduction) == (2.0, "all_sequence_mean")
    trainer.create_optimizer_and_scheduler(num_training_steps=config.optimizer_steps)
    assert type(trainer.optimizer).__name__ == "AdamW"
    assert {group["weight_decay"] for group in trainer.optimizer.param_groups} == {0.01, 0.0}  # biases and norms: no decay
    rates = []
    for _ in range(22):
        rates.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert rates[0] == 0.0 and rates[10] == pytest.approx(0.5e-3) and rates[20] == rates[21] == pytest.approx(1e-3)


def test_importance_sampling_cap_off_turns_both_corrections_off(recipe, tiny_model_dir, problems_file, tmp_path):
    from sdlab.training.run import build_trainer

    for method in ("grpo", "sdpo"):
        config = load_train_config(recipe, tiny_overrides(tiny_model_dir, problems_file, tmp_path / method, f"method={method}", "importance_sampling_cap=null"))
        args = build_trainer(config, model_path=str(tiny_model_dir), run_dir=tmp_path / method, callbacks=[], show_teacher=0).args
        assert (args.vllm_importance_sampling_correction if method == "grpo" else args.distillation_is_clip) in (False, None)


@pytest.mark.parametrize("steps", [3, 4])
def test_a_run_logs_the_distinct_problems_its_sampler_drew(steps, recipe, tiny_model_dir, problems_file, tmp_path):
    from sdlab.core.data import load_problems
    from sdlab.core.io import read_json, read_jsonl
    from sdlab.training.grpo import problems_drawn

    out = tmp_path / "run"
    summary = run(recipe, tiny_overrides(tiny_model_dir, problems_file, out, f"steps={steps}", "save_steps=10", "seed=3"))
    predicted = problems_drawn([p.id for p in load_problems(str(problems_file))], prompts_per_step=2, steps=steps, seed=3)
    seen = read_json(out / "problems_seen.json")
    assert seen == dict(predicted)  # the real trainer drew exactly what the sampler simulation says
    assert [row["distinct_problems_seen"] for row in read_jsonl(out / "metrics.jsonl")][-1] == summary["distinct_problems_seen"] == 2 * steps


def test_teacher_template_names_the_studys_two_prompts(recipe, tiny_model_dir, problems_file, tmp_path):
    from sdlab.core.contexts import PROBE_TEMPLATE, TRAINING_TEMPLATE
    from sdlab.training.run import build_trainer

    for name, template in (("training", TRAINING_TEMPLATE), ("probe", PROBE_TEMPLATE)):
        config = load_train_config(recipe, tiny_overrides(tiny_model_dir, problems_file, tmp_path / name, "method=sdpo", f"sdpo.template={name}"))
        assert build_trainer(config, model_path=str(tiny_model_dir), run_dir=tmp_path / name, callbacks=[], show_teacher=0).args.teacher_template == template
    assert TRAINING_TEMPLATE.format(question="Q", solution="S") == "Q\nCorrect solution:\n\nS\n\nCorrectly solve the original question."
