"""The teacher's forward pass over x + c + y, reading each distinct teacher prompt x + c once.

    logits = shared_prompt_logits(model, input_ids, attention_mask, completion_length=T)   # [A, T, V]

In a rollout group most rows share one teacher prompt (the question and the same successful
sibling), which is as long as the completion or longer. The prompts are run once each, with
their KV cache; the cache is then copied to the rows and only the completions are run on it.
Positions are those of the one-pass forward (transformers numbers them from 0 over the padded
row, with or without a cache), so the logits are the same up to float rounding (tested).
"""

from __future__ import annotations

import torch


def shared_prompt_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, completion_length: int, cache_kwarg: str = "cache") -> torch.Tensor:
    """[A, L] rows (left-padded prompt, then a completion of `completion_length`) -> [A, T, V] logits
    predicting the completion tokens, as `model(input_ids)[:, -T - 1 : -1]`.

    Always two forward calls (distinct prompts, then completions), so that ranks of a sharded
    model (ZeRO-3, FSDP), whose forwards are collective, make the same calls. `cache_kwarg` is
    the model's name for its KV-cache argument (`past_key_values` before transformers 5.2x).
    """
    width = input_ids.size(1) - completion_length
    prompt_ids, prompt_mask = input_ids[:, :width], attention_mask[:, :width]
    keys = torch.cat([prompt_ids * prompt_mask, prompt_mask], dim=1)  # a pad id that is also a real token stays distinct
    _, row_to_prompt = torch.unique(keys, dim=0, return_inverse=True)
    firsts = torch.full((int(row_to_prompt.max()) + 1,), len(row_to_prompt), device=input_ids.device)
    firsts = firsts.scatter_reduce(0, row_to_prompt, torch.arange(len(row_to_prompt), device=input_ids.device), reduce="amin")
    prompts = model(input_ids=prompt_ids[firsts], attention_mask=prompt_mask[firsts], use_cache=True, logits_to_keep=1)
    cache = prompts.cache if hasattr(prompts, "cache") else prompts.past_key_values
    cache.batch_select_indices(row_to_prompt)
    completions = model(
        input_ids=input_ids[:, width:], attention_mask=attention_mask, use_cache=False, logits_to_keep=completion_length, **{cache_kwarg: cache}
    )
    first = prompts.logits[row_to_prompt]  # [A, 1, V]: the prompt's last position predicts the first completion token
    return torch.cat([first, completions.logits[:, :-1]], dim=1)
