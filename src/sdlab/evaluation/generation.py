"""Sampling completions from a chat model: one interface, two backends.

`make_generator(model, tokenizer)` returns an object whose `.generate(prompts, params)`
gives, for each prompt, `params.n` `Completion`s. The transformers backend runs anywhere
(batched `model.generate`, left padding) and leaves the model object usable for other work,
such as scoring log-probs; the vLLM backend is picked by `backend="auto"` when vLLM is
installed and a CUDA device is present, and loads its own copy of the weights from a path.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from sdlab import SdlabError
from sdlab.config.sources import require_hub, source_kind

logger = logging.getLogger(__name__)

Messages = Sequence[dict[str, str]]
Prompt = Messages | str  # chat messages, or a prompt already rendered with its chat template
BACKENDS = ("auto", "transformers", "vllm")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


@dataclass(frozen=True)
class SamplingParams:
    """The study's evaluation sampling (temperature 0.6, top-p 0.95, top-k 20).

    temperature 0 means greedy decoding (the n completions are then identical copies);
    top_k 0 and top_p 1.0 switch those filters off; `seed` makes a call reproducible.
    """

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    max_new_tokens: int = 1024
    n: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise SdlabError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise SdlabError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.n < 1 or self.max_new_tokens < 1:
            raise SdlabError(f"top_k must be >= 0, n and max_new_tokens >= 1 (got top_k={self.top_k}, n={self.n}, max_new_tokens={self.max_new_tokens})")


@dataclass(frozen=True)
class Completion:
    """One sampled reply. `token_ids` are the generated ids, ending with the EOS token when
    `finished`; `finished` is False when the reply was cut at `max_new_tokens`."""

    text: str
    token_ids: list[int]
    num_tokens: int
    finished: bool


class Generator(Protocol):
    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, *, enable_thinking: bool | None = None) -> list[list[Completion]]: ...


def check_model_source(name_or_path: str | Path) -> None:
    """Fail early, naming what is missing, when a local model directory is incomplete
    (hub ids are checked when they load)."""
    if source_kind(name_or_path, model=True) in ("local", "missing"):
        _check_local_dir(Path(name_or_path).expanduser())
    else:
        require_hub(str(name_or_path), "model directory")


def _check_local_dir(path: Path) -> None:
    if not path.exists():
        raise SdlabError(f"{path}: model directory not found (give a local directory or a hub id such as Qwen/Qwen3-1.7B)")
    if not path.is_dir():
        raise SdlabError(f"{path}: not a directory; a model is a directory with config.json, tokenizer files and weights")
    names = {child.name for child in path.iterdir()}
    missing = []
    if "config.json" not in names:
        missing.append("config.json")
    if not names & set(TOKENIZER_FILES):
        missing.append("a tokenizer (" + " or ".join(TOKENIZER_FILES) + ")")
    if not any(name.endswith(WEIGHT_SUFFIXES) for name in names):
        missing.append("weights (*.safetensors or *.bin)")
    if missing:
        raise SdlabError(f"{path}: not a complete model directory, missing {', '.join(missing)}; save it with save_pretrained")


def _source(name_or_path: str | Path) -> str:
    """What from_pretrained gets: an expanded local path, or the hub id unchanged."""
    return str(Path(name_or_path).expanduser()) if source_kind(name_or_path, model=True) in ("local", "missing") else str(name_or_path)


def load_tokenizer(name_or_path: str | Path, *, padding_side: str = "left"):
    """The model's tokenizer, left-padded for generation; without a pad token it pads with EOS."""
    from transformers import AutoTokenizer

    check_model_source(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(_source(name_or_path), trust_remote_code=False)
    except OSError as err:
        raise SdlabError(f"{name_or_path}: cannot load the tokenizer ({err}); without network access only local directories and cached hub ids load") from None
    tokenizer.padding_side = padding_side
    return ensure_pad_token(tokenizer)


def ensure_pad_token(tokenizer):
    """Batching needs a pad token; without one, pad with EOS (harmless: padding is masked and
    replies are cut at their first EOS) and say so."""
    if tokenizer.pad_token is None:
        logger.warning("%s: tokenizer has no pad token; padding with EOS (%r)", tokenizer.name_or_path, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def kv_cache_for(model) -> str | None:
    """The `cache_implementation` for `model.generate` on this model and device.

    On CPU a preallocated ("static") cache: the default dynamic cache grows by `torch.cat`
    every token, which was a third of organism sampling time, and it sampled the same tokens
    (docs/measurements.md#generation). Only for architectures that declare static-cache
    support (`_can_compile_fullgraph`: Llama, Qwen, Mistral, GPT-2, ...). Elsewhere
    transformers' default, because a static cache makes transformers compile the forward
    pass on CUDA."""
    return "static" if model.device.type == "cpu" and getattr(model, "_can_compile_fullgraph", False) else None


def load_model_and_tokenizer(name_or_path: str | Path, *, dtype: torch.dtype | str | None = None, device: str | torch.device | None = None):
    """Load a causal LM and its tokenizer from a local directory or a hub id (no remote code).

    Defaults: CUDA when present (bfloat16), else CPU in float32 (CPU half precision is slow
    and inexact). The model is returned in eval mode; training code may switch it back.
    """
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(name_or_path)
    device = torch.device(device or default_device())
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(_source(name_or_path), dtype=dtype, trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 - missing files, bad configs, corrupt weights (safetensors' own error type) all mean "not loadable"
        raise SdlabError(f"{name_or_path}: cannot load the model ({type(err).__name__}: {err}); check the directory holds a complete saved model") from None
    return model.to(device).eval(), tokenizer


def render_prompt(tokenizer, messages: Messages, *, enable_thinking: bool | None = None) -> str:
    """Chat messages -> the prompt text ending with the assistant header.

    `enable_thinking` is passed to the template only when set, so templates that do not
    know it (most non-Qwen3 models) render exactly as their authors intended.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise SdlabError(f"{tokenizer.name_or_path}: tokenizer has no chat template; use an instruct/chat model or set tokenizer.chat_template")
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True, **extra)


def _render_all(tokenizer, prompts: Sequence[Prompt], enable_thinking: bool | None) -> list[str]:
    return [p if isinstance(p, str) else render_prompt(tokenizer, p, enable_thinking=enable_thinking) for p in prompts]


def eos_token_ids(model, tokenizer) -> set[int]:
    """Every id that ends a reply: the generation config's (Qwen lists two) and the tokenizer's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(ids if isinstance(ids, list) else [] if ids is None else [ids])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class TransformersGenerator:
    """Batched sampling with `model.generate`; `batch_size` prompts (x n samples) per call
    bounds memory. Results depend on `batch_size` (padding changes the numerics)."""

    def __init__(self, model, tokenizer, *, batch_size: int = 8, show_progress: bool = False):
        self.model, self.tokenizer = model, ensure_pad_token(tokenizer)
        self.batch_size, self.show_progress = batch_size, show_progress
        self.eos_ids = eos_token_ids(model, tokenizer)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, *, enable_thinking: bool | None = None) -> list[list[Completion]]:
        from tqdm.auto import tqdm

        texts = _render_all(self.tokenizer, prompts, enable_thinking)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        starts = range(0, len(texts), self.batch_size)
        results: list[list[Completion]] = []
        for start in tqdm(starts, desc="generate", unit="batch", disable=not self.show_progress):
            results.extend(self._generate_batch(texts[start : start + self.batch_size], params))
        return results

    @torch.inference_mode()
    def _generate_batch(self, texts: list[str], params: SamplingParams) -> list[list[Completion]]:
        from transformers import GenerationConfig

        # Templates already hold BOS and the role markers: no special tokens are added here.
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False).to(self.model.device)
        greedy = params.temperature == 0
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=not greedy,
            num_return_sequences=1 if greedy else params.n,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
            cache_implementation=kv_cache_for(self.model),
            **({} if greedy else {"temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k or None}),
        )
        was_training = self.model.training
        self.model.eval()
        try:
            output = self.model.generate(**batch, generation_config=config)  # [B x n, prompt + new]
        finally:
            self.model.train(was_training)
        rows = [self._completion(row) for row in output[:, batch["input_ids"].shape[1] :].tolist()]
        per_prompt = 1 if greedy else params.n
        groups = [rows[i : i + per_prompt] for i in range(0, len(rows), per_prompt)]
        return [group * params.n if greedy else group for group in groups]

    def _completion(self, new_ids: list[int]) -> Completion:
        """Cut at the first EOS (what follows is padding); no EOS means max_new_tokens was hit."""
        end = next((i for i, token in enumerate(new_ids) if token in self.eos_ids), None)
        ids = new_ids if end is None else new_ids[: end + 1]
        return Completion(text=self.tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids, num_tokens=len(ids), finished=end is not None)


class VLLMGenerator:
    """vLLM offline engine built from a model path; prompts are rendered and tokenized here
    so both backends see identical token ids (no second BOS)."""

    def __init__(self, model_path: str | Path, tokenizer, *, gpu_memory_utilization: float = 0.85, max_model_len: int | None = None, show_progress: bool = False, **llm_kwargs: Any):
        from vllm import LLM

        self.tokenizer, self.show_progress = tokenizer, show_progress
        self.llm = LLM(model=_source(model_path), tokenizer=_source(model_path), trust_remote_code=False, gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len, **llm_kwargs)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams, *, enable_thinking: bool | None = None) -> list[list[Completion]]:
        import vllm

        greedy = params.temperature == 0
        sampling = vllm.SamplingParams(
            n=1 if greedy else params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            skip_special_tokens=True,
        )
        texts = _render_all(self.tokenizer, prompts, enable_thinking)
        token_prompts = [{"prompt_token_ids": self.tokenizer(t, add_special_tokens=False)["input_ids"]} for t in texts]
        outputs = self.llm.generate(token_prompts, sampling, use_tqdm=self.show_progress)
        results = []
        for request in outputs:
            group = [Completion(text=o.text, token_ids=list(o.token_ids), num_tokens=len(o.token_ids), finished=o.finish_reason == "stop") for o in request.outputs]
            results.append(group * params.n if greedy else group)
        return results


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def resolve_backend(backend: str) -> str:
    """`auto` -> vllm when it can run here, else transformers; an impossible choice is an error."""
    if backend not in BACKENDS:
        raise SdlabError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "vllm" if vllm_available() else "transformers"
    if backend == "vllm" and not vllm_available():
        raise SdlabError("backend 'vllm' needs a CUDA GPU and vLLM (pip install 'sdlab[vllm]'); use --backend transformers")
    return backend


def make_generator(model, tokenizer=None, backend: str = "auto", *, batch_size: int = 8, show_progress: bool = False, **vllm_kwargs: Any) -> Generator:
    """A generator over a loaded model or a model path (vLLM always loads from the path).

    A loaded model passed to the transformers backend is used as is, not copied.
    """
    backend = resolve_backend(backend)
    if isinstance(model, (str, Path)):
        path = model
        if tokenizer is None:
            tokenizer = load_tokenizer(path)
    else:
        path = model.name_or_path
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(path)
    if backend == "vllm":
        return VLLMGenerator(path, tokenizer, show_progress=show_progress, **vllm_kwargs)
    if isinstance(model, (str, Path)):
        model, _ = load_model_and_tokenizer(model)
    return TransformersGenerator(model, tokenizer, batch_size=batch_size, show_progress=show_progress)
