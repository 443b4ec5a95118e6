"""The probe: batched scoring, the information-gap and divergence-split estimators (where
the truth is known), the heatmap, and `sdlab probe` end to end and on bad input.

Where a known answer is needed the model is a *bigram* Qwen2 (no decoder layers, one-hot
embeddings, lm_head = a chosen table): p(y_t | everything before) = softmax(table[y_{t-1}]),
so it provably ignores anything but the previous token, and with a copy table it provably
reads the answer out of a context that ends right before the response.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from sdlab import SdlabError
from sdlab.config.schema import ProbeConfig
from sdlab.core.losses import divergence
from sdlab.probe.gap import divergence_split, divergence_split_by_problem, information_gap, mean_se
from sdlab.probe.heatmap import HeatmapResponse, colour, render_heatmap
from sdlab.probe.probe import run_probe
from sdlab.probe.scoring import SamplingSpec, sampling_log_probs, score_responses

V = 16  # bigram vocabulary: 0 BOS, 1 question, 2 separator, 3 context marker, 4..13 digits, 14 EOS, 15 pad
BOS, QUESTION, SEP, CTX, EOS, PAD = 0, 1, 2, 3, 14, 15
DIGITS = list(range(4, 14))


def bigram_model(table: torch.Tensor) -> Qwen2ForCausalLM:
    """A Qwen2 with zero layers whose next-token logits are exactly table[previous token]."""
    config = Qwen2Config(
        vocab_size=V, hidden_size=V, intermediate_size=4, num_hidden_layers=0, num_attention_heads=1, num_key_value_heads=1,
        tie_word_embeddings=False, rms_norm_eps=1e-12, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(V))  # one-hot hidden state ...
        model.model.norm.weight.fill_(V**-0.5)  # ... kept one-hot (unit) by the final RMSNorm
        model.lm_head.weight.copy_(table.T)
    return model.eval()


def copy_table() -> torch.Tensor:
    """After SEP: uniform over the 10 digits; after a digit: that digit again (a copy)."""
    table = torch.full((V, V), -30.0)
    table[SEP, DIGITS] = 0.0
    for d in DIGITS:
        table[d, d] = 30.0
    return table


def sample(model, prompt: list[int], n: int, *, seed: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> list[list[int]]:
    torch.manual_seed(seed)
    out = model.generate(
        torch.tensor([prompt]), do_sample=True, max_new_tokens=1, num_return_sequences=n, temperature=temperature,
        top_k=top_k or None, top_p=top_p, pad_token_id=PAD, eos_token_id=EOS,
    )
    return out[:, len(prompt) :].tolist()


def nll_by_problem(model, prompts, responses_by_problem, *, sampling=None) -> list[list[float]]:
    flat_prompts = [p for p, rs in zip(prompts, responses_by_problem) for _ in rs]
    flat = [r for rs in responses_by_problem for r in rs]
    scores = score_responses(model, prompts=flat_prompts, responses=flat, pad_id=PAD, sampling=sampling, batch_size=16)
    values = [-float((s.logq if sampling else s.logp).sum()) for s in scores]
    it = iter(values)
    return [[next(it) for _ in rs] for rs in responses_by_problem]


# ------------------------------------------------------------------ batched scoring


def test_batched_scoring_equals_one_sequence_at_a_time(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    pad = AutoTokenizer.from_pretrained(tiny_model_dir).pad_token_id
    gen = torch.Generator().manual_seed(0)

    def rand(lo, hi):
        return [torch.randint(5, 400, (int(torch.randint(lo, hi, (1,), generator=gen)),), generator=gen).tolist() for _ in range(7)]

    prompts, teacher_prompts, responses = rand(2, 12), rand(2, 30), rand(1, 15)
    scores = score_responses(model, prompts=prompts, responses=responses, pad_id=pad, teacher_prompts=[teacher_prompts], alpha=0.5, batch_size=3, time_chunk=4)
    for prompt, teacher, response, score in zip(prompts, teacher_prompts, responses, scores):
        with torch.no_grad():
            student_lp = model(torch.tensor([prompt + response])).logits[0, len(prompt) - 1 : -1].log_softmax(-1)
            teacher_lp = model(torch.tensor([teacher + response])).logits[0, len(teacher) - 1 : -1].log_softmax(-1)
        ids = torch.tensor(response)[:, None]
        assert score.logp.shape == (len(response),)
        torch.testing.assert_close(score.logp, student_lp.gather(-1, ids)[:, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(score.teacher_logp[0], teacher_lp.gather(-1, ids)[:, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(score.divergence[0], divergence(student_lp, teacher_lp, alpha=0.5), atol=1e-5, rtol=0)


def test_sampling_log_probs_are_the_distribution_generate_samples_from():
    """6000 draws from `generate` (T 0.6, top-k 6, top-p 0.9): every token drawn has the
    frequency exp(log q) says, and those tokens carry all of q's mass."""
    table = torch.zeros(V, V)
    table[SEP] = torch.linspace(-2.0, 3.0, V)
    model = bigram_model(table)
    spec = dict(temperature=0.6, top_k=6, top_p=0.9)
    q = sampling_log_probs(table[SEP].expand(V, V), torch.arange(V), **spec).exp()  # q(v) for every v
    draws = torch.tensor(sample(model, [BOS, SEP], 6000, seed=1, **spec))[:, 0]
    empirical = torch.bincount(draws, minlength=V).float() / len(draws)
    drawn = empirical > 0
    assert 2 <= int(drawn.sum()) <= 6
    torch.testing.assert_close(q[drawn].sum(), torch.tensor(1.0))
    torch.testing.assert_close(empirical[drawn], q[drawn], atol=0.02, rtol=0)


# ------------------------------------------------------------------ information gap


def test_information_gap_on_hand_computed_numbers():
    gap = information_gap([[4.0, 2.0], [6.0, 6.0]], [[2, 2], [3, 3]], [[1.0, 1.0], [2.0, 0.0]], [[1, 1], [1, 1]])
    assert gap["entropy"] == mean_se([3.0, 6.0])
    assert gap["entropy_context"] == mean_se([1.0, 1.0])
    assert gap["gap"] == mean_se([2.0, 5.0]) == pytest.approx((3.5, 1.5))
    assert gap["entropy_per_token"] == mean_se([1.5, 2.0])
    assert gap["gap_per_token"] == mean_se([0.5, 1.0])


def test_analytic_gap_matches_the_entropy_difference():
    """Samples drawn from known categoricals: the estimate is within 3 SE of H(p) - H(p_c)."""
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.25, 0.125, 0.125])
    p_c = torch.tensor([0.9, 0.1, 0.0, 0.0])
    truth = float(-(p * p.log()).sum() - -(p_c[:2] * p_c[:2].log()).sum())

    def nll(dist):
        return [[-float(dist[i].log()) for i in torch.multinomial(dist, 8, replacement=True, generator=gen)] for _ in range(300)]

    ones = [[1] * 8] * 300
    mean, se = information_gap(nll(p), ones, nll(p_c), ones)["gap"]
    assert abs(mean - truth) < 3 * se and se < 0.05
    mean, se = information_gap(nll(p), ones, nll(p), ones)["gap"]  # same distribution: no information
    assert abs(mean) < 3 * se


def test_gap_is_zero_when_the_model_cannot_see_the_context():
    """A bigram model only sees the previous token: a context placed before the separator
    cannot change its distribution, so the gap is ~0 and the divergence exactly 0."""
    table = torch.randn(V, V, generator=torch.Generator().manual_seed(3))
    model = bigram_model(table)
    digits = DIGITS[:6]
    plain = [[BOS, QUESTION, d, SEP] for d in digits]
    guided = [[BOS, QUESTION, d, CTX, d, d, SEP] for d in digits]  # the "answer" is in the prompt, out of reach
    h_x = nll_by_problem(model, plain, [sample(model, p, 32, seed=i) for i, p in enumerate(plain)])
    h_xc = nll_by_problem(model, guided, [sample(model, p, 32, seed=100 + i) for i, p in enumerate(guided)])
    ones = [[1] * 32] * len(digits)
    mean, se = information_gap(h_x, ones, h_xc, ones)["gap"]
    assert abs(mean) < 3 * se
    responses = [r for p in plain for r in sample(model, p, 4, seed=7)]
    scores = score_responses(model, prompts=[p for p in plain for _ in range(4)], responses=responses, pad_id=PAD, teacher_prompts=[[g for g in guided for _ in range(4)]])
    assert max(float(s.divergence[0].abs().max()) for s in scores) < 1e-6


def test_gap_is_log10_when_the_context_gives_the_answer():
    """With a copy table, x leaves the digit uniform (H = log 10) and c = "the digit, just
    before the response" fixes it (H = 0): the gap is log 10 per response."""
    model = bigram_model(copy_table())
    plain = [[BOS, QUESTION, SEP] for _ in DIGITS]
    guided = [[BOS, QUESTION, SEP, CTX, d] for d in DIGITS]
    h_x = nll_by_problem(model, plain, [sample(model, p, 16, seed=i) for i, p in enumerate(plain)])
    guided_samples = [sample(model, p, 16, seed=50 + i) for i, p in enumerate(guided)]
    assert all(r == [d] for d, rs in zip(DIGITS, guided_samples) for r in rs)
    h_xc = nll_by_problem(model, guided, guided_samples)
    ones = [[1] * 16] * len(DIGITS)
    gap = information_gap(h_x, ones, h_xc, ones)
    assert gap["gap"][0] == pytest.approx(math.log(10), abs=1e-3)
    assert gap["entropy_context"][0] == pytest.approx(0.0, abs=1e-3)


def test_sampling_entropy_is_unbiased_and_raw_model_scoring_is_the_cross_entropy():
    """At temperature 0.6 the samples come from q, not p: scoring under q estimates H(q);
    scoring under p estimates H(q, p) = H(q) + KL(q || p), which is larger."""
    table = torch.zeros(V, V)
    table[SEP, DIGITS] = torch.linspace(0.0, 5.0, len(DIGITS))
    table[SEP, [t for t in range(V) if t not in DIGITS]] = -30.0
    model = bigram_model(table)
    logits = table[SEP]
    q, p = torch.softmax(logits / 0.6, -1), torch.softmax(logits, -1)
    h_q, cross = float(-(q * q.clamp_min(1e-30).log()).sum()), float(-(q * p.log()).sum())
    prompts = [[BOS, QUESTION, SEP]] * 40
    samples = [sample(model, pr, 25, seed=i, temperature=0.6) for i, pr in enumerate(prompts)]
    spec = SamplingSpec(temperature=0.6, top_k=0, top_p=1.0)
    per_q = [sum(row) / len(row) for row in nll_by_problem(model, prompts, samples, sampling=spec)]
    per_p = [sum(row) / len(row) for row in nll_by_problem(model, prompts, samples)]
    (under_q, se_q), (under_p, se_p) = mean_se(per_q), mean_se(per_p)
    assert abs(under_q - h_q) < 3 * se_q
    assert abs(under_p - cross) < 3 * se_p
    bias, se_bias = mean_se([b - a for a, b in zip(per_q, per_p)])  # paired: the same samples scored twice
    assert abs(bias - (cross - h_q)) < 3 * se_bias and bias > 5 * se_bias


# ------------------------------------------------------------------ divergence split


def test_divergence_split_adds_up_on_hand_computed_tensors():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.5])
    markers = torch.tensor([True, False, False, False, True])
    split = divergence_split(values, markers)
    assert split["marker_mean"] == pytest.approx(0.75) and split["other_mean"] == pytest.approx(3.0)
    assert split["ratio"] == pytest.approx(0.25)
    assert split["mean"] == pytest.approx(10.5 / 5)
    assert split["marker_share"] == pytest.approx(1.5 / 10.5)
    n_m, n_o = split["marker_tokens"], split["other_tokens"]
    assert (n_m * split["marker_mean"] + n_o * split["other_mean"]) / (n_m + n_o) == pytest.approx(split["mean"])


def test_divergence_split_by_problem_pools_tokens_and_bootstraps_problems():
    gen = torch.Generator().manual_seed(0)
    values = [[torch.rand(int(n), generator=gen) for n in torch.randint(3, 9, (3,), generator=gen)] for _ in range(12)]
    markers = [[torch.rand(len(v), generator=gen) < 0.3 for v in row] for row in values]
    split = divergence_split_by_problem(values, markers, reps=50)
    flat_v = torch.cat([v for row in values for v in row])
    flat_m = torch.cat([m for row in markers for m in row])
    assert split["mean"] == pytest.approx(float(flat_v.mean()))
    assert split["marker_share"] * flat_v.sum() == pytest.approx(float(flat_v[flat_m].sum()), rel=1e-5)
    assert 0 < split["mean_se"] < 0.2 and 0 < split["ratio_se"]


# ------------------------------------------------------------------ heatmap


def test_heatmap_escapes_text_outlines_markers_and_is_self_contained():
    response = HeatmapResponse(
        title="problem <1>", tokens=["<script>", " wait", ' "x" & y'], student_logp=[-1.0, -0.5, -2.0],
        teacher_logp=[-1.0, -3.0, -0.5], divergence=[0.0, 0.4, 0.2], markers=[False, True, False],
    )
    page = render_heatmap({"solution": [response], "hint": []})
    assert "<script>" not in page and "&lt;script&gt;" in page and "&quot;x&quot; &amp; y" in page
    assert "problem &lt;1&gt;" in page
    assert page.count('class="t m"') == 2  # the marker token and the legend sample
    assert "teacher context: solution" in page and "teacher context: hint" in page
    assert "http" not in page and "<link" not in page and "src=" not in page
    assert colour(2.5, 2.5) == "rgb(255,0,0)" and colour(-2.5, 2.5) == "rgb(0,0,255)" and colour(0.0, 1.0) == "rgb(255,255,255)"


# ------------------------------------------------------------------ sdlab probe end to end


@pytest.fixture
def problems_file(tmp_path):
    rows = [
        {"id": "a", "question": "What is 2 + 3?", "answer": "5", "solution": "<think>\nWait, 2 + 3 = 5.\n</think>\n\nSo \\boxed{5}."},
        {"id": "b", "question": "What is 4 * 3?", "answer": "12", "solution": "<think>\nHmm, maybe 12; check.\n</think>\n\n\\boxed{12}"},
    ]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def probe_config(model, data, out, **overrides) -> ProbeConfig:
    values = dict(model=str(model), data=str(data), out=str(out), n=2, band=(0, 2), max_new_tokens=6, backend="transformers", seed=0)
    return ProbeConfig(**{**values, **overrides})


def test_probe_end_to_end_writes_tables_json_samples_and_heatmap(tiny_model_dir, problems_file, tmp_path):
    out = tmp_path / "probe"
    contexts = ["none", "solution", "solution_nothink", "regenerated", "partial:0.5", "hint"]
    summary = run_probe(probe_config(tiny_model_dir, problems_file, out, contexts=contexts, max_prompt_tokens=90))
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "heatmap.html", "probe.json", "probe.md", "prompts.jsonl", "samples.jsonl", "versions.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".probe")]  # the temporary directory was renamed
    saved = json.loads((out / "probe.json").read_text())
    assert list(saved["contexts"]) == contexts
    assert saved["problems"]["selected"] == 2 and saved["problems"]["solution_source"] == {"reference": 2}
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    scored = [s for s in samples if s["context"] != "selection"]
    assert len(scored) == len(contexts) * 2 * 2 and all(math.isfinite(s["nll"]) for s in scored)
    assert len(samples) - len(scored) == 2 * 2  # the selection round: 2 problems x n
    for name in contexts[1:]:
        row = saved["contexts"][name]
        split = row["divergence"]
        assert split["marker_tokens"] + split["other_tokens"] == sum(s["num_tokens"] for s in samples if s["context"] == "none")
        weighted = split["marker_tokens"] * (split["marker_mean"] if split["marker_tokens"] else 0) + split["other_tokens"] * split["other_mean"]
        assert weighted / (split["marker_tokens"] + split["other_tokens"]) == pytest.approx(split["mean"], rel=1e-5)
        assert row["gap"]["mean"] == pytest.approx(row["entropy"]["mean"] - row["entropy_context"]["mean"], abs=1e-4)
    assert saved["contexts"]["solution"]["truncated_prompts"] == 2  # 90 tokens cannot hold question + solution
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    hint = next(p["prompt"] for p in prompts if p["context"] == "hint" and p["problem_id"] == "a")
    assert "What is 2 + 3?\n\nCorrect solution: \\boxed{5}\n\nCorrectly solve the original question." in hint
    table = (out / "probe.md").read_text()
    assert "| context | score | response tokens | epistemic words (paper)" in table and "| partial:0.5 |" in table
    assert "teacher context: regenerated" in (out / "heatmap.html").read_text()
    assert summary["contexts"]["none"]["score"] == saved["contexts"]["none"]["score"]
    # the gap under the model's own distribution, beside the truncated sampler's, each named as such
    own = saved["contexts"]["solution"]["model_distribution"]
    assert own["gap"]["mean"] == pytest.approx(saved["contexts"]["none"]["model_distribution"]["entropy"]["mean"] - own["entropy_context"]["mean"], abs=1e-4)
    assert saved["contexts"]["none"]["model_distribution"]["gap"]["mean"] == 0.0 and own["entropy_context"]["mean"] != saved["contexts"]["solution"]["entropy_context"]["mean"]
    assert "under the truncated sampler (temperature 0.6, top-k 20, top-p 0.95)" in table
    assert "under the model's own distribution: temperature 1, no top-k/top-p" in table


def test_probe_refuses_a_model_without_tokenizer_and_writes_nothing(tiny_model_dir, problems_file, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, bare / name)
    out = tmp_path / "out"
    with pytest.raises(SdlabError, match="tokenizer"):
        run_probe(probe_config(bare, problems_file, out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare", "problems.jsonl"]


def test_probe_with_no_problem_in_the_band_says_what_it_tried(tiny_model_dir, problems_file, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SdlabError) as err:
        run_probe(probe_config(tiny_model_dir, problems_file, out, band=(1, 2)))  # a random model solves nothing
    message = str(err.value)
    assert "no problem has an unguided solve count in the band 1 to 2 of 2" in message
    assert "tried 2 problems, solve counts 0/2: 2, 1/2: 0, 2/2: 0" in message and "widen --band or give more problems" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["problems.jsonl"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"contexts": "none,solutoin"}, "unknown context 'solutoin'; allowed: none, solution"),
        ({"band": (3, 1)}, "band 3,1 must satisfy 0 <= lo <= hi <= n=2"),
        ({"template": "{question} only"}, "it must use exactly {question} and {solution}"),
    ],
)
def test_probe_config_rejects_bad_settings(tmp_path, overrides, message):
    from sdlab.config import build_config

    values = dict(model="m", data="d", out=str(tmp_path / "o"), n=2, **overrides)
    with pytest.raises(SdlabError) as err:
        build_config(ProbeConfig, values)
    assert message in str(err.value)


def test_probe_refuses_to_overwrite_without_force(tiny_model_dir, problems_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(SdlabError, match="--force"):
        run_probe(probe_config(tiny_model_dir, problems_file, out))
    assert (out / "keep.txt").read_text() == "x"


@pytest.mark.parametrize(("top_k", "top_p"), [(20, 0.95), (5, 1.0), (0, 0.8), (0, 1.0), (3, 0.3)])
def test_sampling_log_probs_equal_transformers_warpers(top_k, top_p):
    """The fast top-k-first implementation against transformers' own logits processors."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(top_k))
    warpers = LogitsProcessorList([TemperatureLogitsWarper(0.6)] + ([TopKLogitsWarper(top_k)] if top_k else []) + ([TopPLogitsWarper(top_p)] if top_p < 1 else []))
    reference = warpers(None, logits.clone()).log_softmax(-1)  # [64, 50], -inf outside the support
    tokens = reference.argmax(-1)
    in_support = torch.multinomial(reference.exp(), 1, generator=torch.Generator().manual_seed(1))[:, 0]
    for ids in (tokens, in_support):
        torch.testing.assert_close(sampling_log_probs(logits, ids, temperature=0.6, top_k=top_k, top_p=top_p), reference.gather(-1, ids[:, None])[:, 0])
    outside = reference.argmin(-1)  # a token the sampler never picks gets a finite value
    assert torch.isfinite(sampling_log_probs(logits, outside, temperature=0.6, top_k=top_k, top_p=top_p)).all()


def test_cli_reports_an_unknown_context_on_one_line_and_writes_nothing(tiny_model_dir, problems_file, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "sdlab.cli", "probe", "--model", str(tiny_model_dir), "--data", str(problems_file), "--out", str(out), "--contexts", "none,hints"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "unknown context 'hints'; allowed: none, solution, solution_nothink, regenerated, partial:F" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


@pytest.mark.parametrize("recipe", sorted((Path(__file__).resolve().parents[1] / "recipes" / "probe").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_probe_recipes_validate(recipe):
    from sdlab.config import load_config

    config = load_config(ProbeConfig, recipe, ["n=4"])
    assert config.n == 4 and config.band[1] <= config.n


def test_regenerated_context_is_the_first_correct_response_else_the_first():
    from sdlab.probe.probe import regenerated_context

    responses = [{"text": "a", "correct": False}, {"text": "b", "correct": True}, {"text": "c", "correct": True}]
    assert regenerated_context(responses) == "b"
    assert regenerated_context([{"text": "a", "correct": False}, {"text": "c", "correct": False}]) == "a"


def test_divergence_split_by_problem_per_marker_occurrence():
    # two problems, one response each: a two-piece marker (values 2, 0) and other tokens of 1
    values = [[torch.tensor([2.0, 0.0, 1.0])], [torch.tensor([1.0, 2.0, 0.0])]]
    occurrences = [[torch.tensor([0, 0, -1])], [torch.tensor([-1, 0, 0])]]
    split = divergence_split_by_problem(values, occurrences, reps=20)
    assert split["ratio"] == pytest.approx(1.0) and split["first_piece_ratio"] == pytest.approx(2.0) and split["occurrence_sum_ratio"] == pytest.approx(2.0)
    assert split["occurrences"] == 2 and split["first_piece_ratio_se"] == pytest.approx(0.0)  # every bootstrap draw: the same ratio
