"""Batched scoring of sampled responses: per-token log-probs and student/teacher divergences.

One forward pass per (chunk of responses, prompt set), no per-token Python loop:

    prompts + responses, right-padded, sorted by length  -> decoder -> hidden states
    hidden states at the response positions only [B, R, H] -> lm_head in time windows
    -> log_softmax -> gather the sampled tokens / divergence over the vocabulary

Only the response positions go through `lm_head`, in windows of `time_chunk` tokens, so a
long teacher prompt never materialises [B, L, V] logits. The student and every teacher see
the same responses in the same chunk, so their distributions pair up position by position.

    PYTHONPATH=. python bench/probe_scoring.py   # throughput vs a bare model(input_ids, attention_mask)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sdlab.core.losses import divergence as per_token_divergence

# Logits (float32 elements) held per distribution at once: 2**27 is 512 MiB. A window of the
# response is projected through lm_head at a time, so a 152k vocabulary and a batch of 8 see
# about 110 positions per window, whatever the response length.
LOGIT_BUDGET = 2**27


@dataclass(frozen=True)
class SamplingSpec:
    """The decoding transform the samples were drawn with (applied in Hugging Face's order)."""

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20


@dataclass
class ResponseScores:
    """Per-token numbers for one response, all of shape [T] on the CPU.

    `logp`: log p(y_t | prompt, y_<t) under the raw model (temperature 1).
    `logq`: the same under the sampling distribution (temperature, top-k, top-p); None if not asked.
    `teacher_logp[k]`, `divergence[k]`: the k-th teacher prompt's log-prob of y_t and the
    per-token divergence between the student (this prompt) and that teacher.
    """

    logp: torch.Tensor
    logq: torch.Tensor | None = None
    teacher_logp: list[torch.Tensor] = field(default_factory=list)
    divergence: list[torch.Tensor] = field(default_factory=list)


def gather_tokens(log_probs: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """[..., V] log-probs, [...] ids -> [...] log-prob of each id (already normalised: no second softmax)."""
    return log_probs.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)


def sampling_log_probs(logits: torch.Tensor, token_ids: torch.Tensor, *, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """log q(y_t) where q is what `generate` samples from: logits / T, then top-k, then top-p
    (Hugging Face's order and rules; tested against its warpers and its sampler).

    Top-p only looks at the top-k candidates, so no full-vocabulary sort is needed when top-k
    is on. A sampled token outside the support (a tie or another backend's rounding) is kept
    in it rather than given log q = -inf, so the estimate stays finite.
    """
    scaled = logits.float() / temperature  # [..., V]
    if top_k <= 0 and top_p >= 1.0:
        return gather_tokens(scaled.log_softmax(dim=-1), token_ids)
    candidates, index = scaled.topk(top_k, dim=-1) if 0 < top_k < scaled.shape[-1] else scaled.sort(dim=-1, descending=True)  # [..., K]
    keep = torch.ones_like(candidates, dtype=torch.bool)
    if top_p < 1.0:
        probs = candidates.softmax(dim=-1)
        tail = probs.flip(-1).cumsum(-1).flip(-1)  # mass of this candidate and every less likely one
        keep = tail > 1 - top_p  # transformers drops the tail whose mass is <= 1 - top_p ...
        keep[..., 0] = True  # ... and always keeps the most likely token
    support_lse = candidates.masked_fill(~keep, -torch.inf).logsumexp(dim=-1)  # [...]
    token = scaled.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)  # [...]
    inside = ((index == token_ids.unsqueeze(-1)) & keep).any(dim=-1)
    return token - torch.where(inside, support_lse, torch.logaddexp(support_lse, token))


def pad_batch(sequences: list[list[int]], *, pad_id: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest: ([B, L] ids, [B, L] attention mask)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def response_hidden_states(model, prompts: list[list[int]], responses: list[list[int]], *, pad_id: int) -> torch.Tensor:
    """Final hidden states that predict each response token: [B, R, H], R the longest response.

    Row b's response token j is predicted at position len(prompt_b) - 1 + j; padded slots
    repeat the last position (masked by the caller).
    """
    device = next(model.parameters()).device
    ids, mask = pad_batch([p + r for p, r in zip(prompts, responses)], pad_id=pad_id, device=device)
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, L, H]
    width = max(len(r) for r in responses)
    starts = torch.tensor([len(p) - 1 for p in prompts], device=device)
    positions = (starts[:, None] + torch.arange(width, device=device)[None, :]).clamp(max=hidden.shape[1] - 1)  # [B, R]
    return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


def hidden_to_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """[B, T, H] -> [B, T, V] float32 logits (with the final soft-cap some models apply)."""
    logits = model.get_output_embeddings()(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


@torch.inference_mode()
def score_responses(
    model,
    *,
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_id: int,
    teacher_prompts: list[list[list[int]]] | None = None,
    sampling: SamplingSpec | None = None,
    alpha: float = 0.5,
    batch_size: int = 8,
    time_chunk: int | None = None,
    progress=None,
) -> list[ResponseScores]:
    """Score `responses[i]` after `prompts[i]` (the student) and after each `teacher_prompts[k][i]`.

    Returns one `ResponseScores` per response, in input order. Responses are processed in
    chunks of `batch_size`, longest-first after sorting by length so a chunk pads little;
    `time_chunk` positions go through lm_head at once (default: what fits LOGIT_BUDGET).
    `alpha` selects the divergence as in `sdlab.core.losses.divergence` (0 forward KL,
    1 reverse KL, in between the generalised JSD). `progress(n)` is called after each chunk.
    """
    teacher_prompts = teacher_prompts or []
    if any(len(r) == 0 for r in responses):
        raise ValueError("score_responses: every response needs at least one token")
    order = sorted(range(len(responses)), key=lambda i: (len(responses[i]), len(prompts[i])), reverse=True)
    results: list[ResponseScores | None] = [None] * len(responses)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        chunk_responses = [responses[i] for i in chunk]
        lengths = [len(r) for r in chunk_responses]
        device = next(model.parameters()).device
        targets, _ = pad_batch(chunk_responses, pad_id=pad_id, device=device)  # [B, R]
        student_hidden = response_hidden_states(model, [prompts[i] for i in chunk], chunk_responses, pad_id=pad_id)
        teacher_hidden = [response_hidden_states(model, [tp[i] for i in chunk], chunk_responses, pad_id=pad_id) for tp in teacher_prompts]
        logp, logq = [], []
        teacher_logp: list[list[torch.Tensor]] = [[] for _ in teacher_prompts]
        divergence: list[list[torch.Tensor]] = [[] for _ in teacher_prompts]
        width = time_chunk or max(16, LOGIT_BUDGET // (len(chunk) * model.get_output_embeddings().weight.shape[0]))
        for t0 in range(0, targets.shape[1], width):
            window = slice(t0, t0 + width)
            logits = hidden_to_logits(model, student_hidden[:, window])  # [B, W, V]
            student = torch.log_softmax(logits, dim=-1)
            logp.append(gather_tokens(student, targets[:, window]))
            if sampling is not None:
                logq.append(sampling_log_probs(logits, targets[:, window], temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p))
            for k, hidden in enumerate(teacher_hidden):
                teacher = torch.log_softmax(hidden_to_logits(model, hidden[:, window]), dim=-1)
                teacher_logp[k].append(gather_tokens(teacher, targets[:, window]))
                divergence[k].append(per_token_divergence(student, teacher, alpha=alpha))
        logp_all = torch.cat(logp, dim=1).cpu()
        logq_all = torch.cat(logq, dim=1).cpu() if logq else None
        teacher_all = [torch.cat(t, dim=1).cpu() for t in teacher_logp]
        divergence_all = [torch.cat(d, dim=1).cpu() for d in divergence]
        for row, (i, n) in enumerate(zip(chunk, lengths)):
            results[i] = ResponseScores(
                logp=logp_all[row, :n].clone(),
                logq=logq_all[row, :n].clone() if logq_all is not None else None,
                teacher_logp=[t[row, :n].clone() for t in teacher_all],
                divergence=[d[row, :n].clone() for d in divergence_all],
            )
        if progress is not None:
            progress(len(chunk))
    return results
