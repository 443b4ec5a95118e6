"""Build the model organism: corpus -> tokenizer -> tiny Llama -> next-token pretraining -> save.

    sdlab organism build                       # default size, cached under $SDLAB_HOME/organism/
    python -c "from sdlab.organism.build import build_organism; print(build_organism(size='test'))"

The saved directory loads with `AutoModelForCausalLM` / `AutoTokenizer` like a hub model.
A second call with the same settings returns the cached directory (a hash of the settings
and the corpus version is stored in `build.json`); `force=True` rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import random
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sdlab import SdlabError
from sdlab.core.io import read_json
from sdlab.organism.corpus import DEFAULT_CORPUS, corpus_design, corpus_documents
from sdlab.organism.tokenizer import render_chat, train_tokenizer

logger = logging.getLogger(__name__)

# A new corpus version when the task families, trace writer or training loop change what gets built.
# v7: a window-extension phase after pretraining. v6 trained on 256-token windows only, and
# 63-76% of the SDPO teacher's scored tokens sat further back than that from its context, where
# its next-token loss rose from 0.09 to 1.95 nats at 512 tokens (`distance_probe`, docs/organism.md#window).
# v8: fact and check drills 19% and 15% of documents (from 12% and 8.5%), and the steps under
# bf16 autocast where the CPU has bf16 instructions. On a newer CPU (2026-12-03, AMD family 26)
# v7's recipe trained to other weights that never learned the lookup facts (ID 0.06); the copy
# after a context was the next to fail. The drills are where both are practised.
# v10: a tenth as many p = 13 problems as ID ones in the corpus's searches, p = 13 facts in the
# fact drills, and `linmod-hard` is p = 13's held-out split (v8 never wrote the check of the
# f(f(x)) it had been, and scored at chance there). 1,900 main steps: at 1,600 or 1,750 no v10
# draw of six learned every copy, at 1,900 or 2,200 four of four.
# v11 (the default since it ships with the package): a concise derivation beside the search,
# and a teacher that derives from a context showing the answer instead of copying it; built at
# 3,800 main steps. `11-nomidsearch` is its ablation without the mid-search switch to the
# derivation. The versions: `corpus.DESIGNS`; which gates the shipped build meets: docs/organism.md.
BUILD_FILE = "build.json"
SHIPPED_DIR = Path(__file__).parent / "shipped"  # package data: the default organism's files
MEASURE_N = 16  # problems per row of the model card's table (the docs use more)
IGNORE = -100  # the target of a token that is read, not learned (transformers' ignore index)


@dataclass(frozen=True)
class Size:
    """Model and budget of one organism size (numbers chosen by measured CPU throughput)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    documents: int  # corpus documents (drawn with repetition from the pretrain splits)
    steps: int
    batch: int  # sequences per step
    seq_len: int
    lr: float
    # Window extension (as long-context LLMs are made): after the main phase, `extend_steps` at
    # the schedule's final lr on `extend_batch` windows of `extend_seq_len`, long enough for the
    # longest sequence training builds. Training on long windows from the start was tried: in
    # 1,600 steps of 2 x 1024 the copy of the question into checks never emerged (ID 0.00).
    extend_steps: int
    extend_batch: int
    extend_seq_len: int
    vocab: int = 512  # BPE merges; the 100 number tokens and the tags come on top


SIZES = {
    "test": Size(hidden=32, layers=2, heads=2, intermediate=64, documents=200, steps=20, batch=4, seq_len=128, lr=3e-3, extend_steps=4, extend_batch=2, extend_seq_len=256),
    # version 11 trains twice the steps (`CorpusDesign.steps_scale`): 3,800 at this size
    "tiny": Size(hidden=128, layers=4, heads=4, intermediate=384, documents=9000, steps=1900, batch=8, seq_len=256, lr=5e-3, extend_steps=300, extend_batch=2, extend_seq_len=1024),
    "small": Size(hidden=192, layers=6, heads=6, intermediate=512, documents=20000, steps=1600, batch=8, seq_len=256, lr=2e-3, extend_steps=300, extend_batch=2, extend_seq_len=1024),
}


def trained_window(settings: dict) -> int:
    """The longest window a build's settings (`build.json`) trained on: the longest distance it knows."""
    return max(settings["seq_len"], settings.get("extend_seq_len", 0) if settings.get("extend_steps") else 0)


def sdlab_home() -> Path:
    return Path(os.environ.get("SDLAB_HOME", Path.home() / ".cache" / "sdlab"))


def default_organism_dir(*, size: str = "tiny", seed: int = 0, corpus: str | int = DEFAULT_CORPUS) -> Path:
    """`<size>-seed<seed>` for the default corpus, `<size>-seed<seed>-v<corpus>` for another, so a
    build of another version never replaces the default's cached build."""
    suffix = "" if str(corpus) == DEFAULT_CORPUS else f"-v{corpus}"
    return sdlab_home() / "organism" / f"{size}-seed{seed}{suffix}"


def size_spec(size: str, corpus: str | int = DEFAULT_CORPUS) -> Size:
    """The size's model and budget, its main steps scaled for the corpus version."""
    spec = SIZES[size]
    return replace(spec, steps=round(spec.steps * corpus_design(corpus).steps_scale))


def shipped_organism_dir(*, size: str = "tiny", seed: int = 0, corpus: str | int = DEFAULT_CORPUS) -> Path | None:
    """The build shipped inside the package for these settings, or None.

    Shipped weights make every user and every CPU use the same instrument without building:
    the same recipe trains to other weights on another CPU's arithmetic (docs/organism.md)."""
    shipped = SHIPPED_DIR / f"{size}-seed{seed}-v{corpus_design(corpus).version}"
    return shipped if is_built(shipped, settings_hash(size, seed, corpus)) else None


def organism_dir(*, size: str = "tiny", seed: int = 0, corpus: str | int = DEFAULT_CORPUS, **build_options) -> Path:
    """The organism a run uses: the shipped build when there is one, else the cached or a new build."""
    return shipped_organism_dir(size=size, seed=seed, corpus=corpus) or build_organism(size=size, seed=seed, corpus=corpus, **build_options)


def weights_sha256(model_dir: str | Path) -> str:
    return hashlib.sha256((Path(model_dir) / "model.safetensors").read_bytes()).hexdigest()


def cpu_class() -> str:
    """The CPU's model name and its bf16 instructions: what decides which weights a build trains to."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), name)
        flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
        name += " (" + (", ".join(sorted(flags & {"avx2", "avx512_bf16", "amx_bf16"})) or "no AVX2") + ")"
    return name


def settings_hash(size: str, seed: int, corpus: str | int = DEFAULT_CORPUS) -> str:
    settings = {"size": size, "seed": seed, "corpus_version": corpus_design(corpus).version, **asdict(size_spec(size, corpus))}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def document_text(tokenizer, document: dict) -> str:
    if "text" in document:
        return document["text"] + tokenizer.pad_token
    return render_chat(tokenizer, document["messages"], document["response"])


def target_lists(tokenizer, documents: list[dict], token_lists: list[list[int]]) -> list[list[int]] | None:
    """Each document's next-token targets: its own ids, with IGNORE where a version-13 teacher
    reply reads a student's search (`read_chars`): the teacher is trained on what it writes
    after that search, not on the search. None when no document reads one (every token is
    learned), so such a build packs its windows once."""
    if not any(document.get("read_chars") for document in documents):
        return None
    targets = []
    for document, ids in zip(documents, token_lists):
        if not document.get("read_chars"):
            targets.append(ids)
            continue
        read_start = len(render_chat(tokenizer, document["messages"]))  # where the response begins
        read_end = read_start + document["read_chars"]
        offsets = tokenizer(document_text(tokenizer, document), add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        targets.append([IGNORE if read_start <= start and end <= read_end else i for i, (start, end) in zip(ids, offsets)])
    return targets


def pack_tokens(token_lists: list[list[int]], *, seq_len: int) -> torch.Tensor:
    """Concatenate documents and cut the stream into `[N, seq_len]` windows (no padding)."""
    stream = [token for tokens in token_lists for token in tokens]
    n = len(stream) // seq_len
    if n == 0:
        raise ValueError(f"corpus of {len(stream)} tokens is shorter than one window of {seq_len}")
    return torch.tensor(stream[: n * seq_len]).view(n, seq_len)


def make_model(size: Size, tokenizer, *, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden, intermediate_size=size.intermediate,
        num_hidden_layers=size.layers, num_attention_heads=size.heads, num_key_value_heads=size.heads,
        max_position_embeddings=2048, tie_word_embeddings=True, rope_theta=10000.0, attention_bias=True,  # q/k/v/o biases, as Qwen2 has
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"), eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = "sdpa"  # 8% faster than eager per training step here (docs/measurements.md#organism)
    return LlamaForCausalLM(config)


def untrained_organism(spec: Size, *, seed: int, corpus: str | int = DEFAULT_CORPUS):
    """The seeded corpus, the tokenizer trained on it, its documents as token ids and the
    untrained model: everything a build draws from its seed before the first step."""
    torch.manual_seed(seed)
    random.seed(seed)
    documents = corpus_documents(spec.documents, seed=seed, corpus=corpus)
    tokenizer = train_tokenizer(_tokenizer_training_texts(documents), vocab_size=spec.vocab)
    token_lists = tokenizer([document_text(tokenizer, d) for d in documents], add_special_tokens=False)["input_ids"]  # one batch call: same ids, a third faster
    return documents, tokenizer, token_lists, make_model(spec, tokenizer, seed=seed)


def lr_at(step: int, *, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(model, token_lists: list[list[int]], size: Size, *, seed: int, bf16: bool, show_progress: bool = True, targets: list[list[int]] | None = None) -> list[float]:
    """Plain next-token loss over every token (prompts included) but those `targets` marks
    IGNORE, main phase then window extension with the optimizer state carried over; returns
    the loss curve of both."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=size.lr, betas=(0.9, 0.95), weight_decay=0.01, fused=True)
    def main_lr(step: int) -> float:
        return lr_at(step, steps=size.steps, peak=size.lr, warmup=max(1, size.steps // 20))

    def windows_and_targets(seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows = pack_tokens(token_lists, seq_len=seq_len)
        return windows, windows if targets is None else pack_tokens(targets, seq_len=seq_len)

    phases = [  # (windows, their targets, sequences per step, steps, lr at a step of the phase)
        (*windows_and_targets(size.seq_len), size.batch, size.steps, main_lr),
        (*windows_and_targets(size.extend_seq_len), size.extend_batch, size.extend_steps, lambda step: main_lr(size.steps)),
    ]
    model.train()
    losses: list[float] = []
    columns = (TextColumn("pretraining"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        bar = progress.add_task("pretrain", total=size.steps + size.extend_steps, loss=float("nan"))
        for windows, window_targets, batch_size, steps, lr_of_step in phases:
            order: list[int] = []
            for step in range(steps):
                if len(order) < batch_size:  # a fresh seeded permutation of the windows each epoch
                    order = torch.randperm(len(windows), generator=generator).tolist()
                picked = [order.pop() for _ in range(batch_size)]
                batch, labels = windows[picked].to(model.device), window_targets[picked].to(model.device)
                for group in optimizer.param_groups:
                    group["lr"] = lr_of_step(step)
                losses.append(train_step(model, optimizer, batch, labels, bf16=bf16))
                progress.update(bar, advance=1, loss=sum(losses[-20:]) / len(losses[-20:]))
    model.eval()
    return losses


def loss_summary(losses: list[float], *, main_steps: int) -> dict[str, float]:
    """The loss curve as a build records it: first step, last 20 of the main phase, last 20."""
    return {
        "loss_first": round(losses[0], 4),
        "loss_before_extension": round(sum(losses[main_steps - 20:main_steps]) / 20, 4),
        "loss_last20": round(sum(losses[-20:]) / len(losses[-20:]), 4),
    }


def bf16_is_native() -> bool:
    """Whether this CPU multiplies bf16 in hardware. Autocast made a step 1.37x cheaper on an
    AMD CPU with avx512_bf16 and 9.4x dearer on an AVX2-only one, which emulates it
    (bench/organism_step_precision.py; docs/measurements.md#organism), so the build uses it
    only where native."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def train_step(model, optimizer, batch: torch.Tensor, labels: torch.Tensor, *, bf16: bool) -> float:
    """One step, its matmuls in bf16 when `bf16` (fp32 weights and optimizer state either way)."""
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=batch, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def recorded_missing_abilities(model_dir: str | Path) -> list[str]:
    """What a build judged its draw to lack (`build.json`); [] for other models and for builds
    from before the judgement."""
    return read_json(Path(model_dir) / BUILD_FILE).get("missing_abilities", [])


def is_built(out_dir: Path, expected_hash: str) -> bool:
    record = out_dir / BUILD_FILE
    if not record.is_file() or not (out_dir / "model.safetensors").is_file():
        return False
    try:
        return json.loads(record.read_text()).get("settings_hash") == expected_hash
    except json.JSONDecodeError:
        return False


# One thread: the shipped weights were trained with one, and the thread count changes the weights.
# Two threads also spun against other work on 2 cores (version 10 under bf16 autocast with two
# threads on an Intel Xeon trained to a loss of 0.401 and no lookups; with one, 0.276 and all).
BUILD_THREADS = 1


def build_organism(out_dir: str | Path | None = None, *, seed: int = 0, size: str = "tiny", corpus: str | int = DEFAULT_CORPUS, force: bool = False, show_progress: bool = True, measure: bool = True, threads: int = BUILD_THREADS) -> Path:
    """Pretrain the organism (or reuse the cached one) and return its directory.

    The build sets its own torch thread count: a process that left the count at its default
    (also 2 on a 2-core machine) trained to different weights than one that set it (measured:
    `sdlab demo` and `sdlab organism build` disagreed), so every caller gets the same organism."""
    if size not in SIZES:
        raise SdlabError(f"organism size {size!r} unknown; choose one of {', '.join(SIZES)}")
    spec = size_spec(size, corpus)
    version = corpus_design(corpus).version
    out_dir = Path(out_dir) if out_dir is not None else default_organism_dir(size=size, seed=seed, corpus=corpus)
    expected = settings_hash(size, seed, corpus)
    if not force and is_built(out_dir, expected):
        logger.info("organism %s-seed%d already built in %s", size, seed, out_dir)
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not force and not (out_dir / BUILD_FILE).is_file():
        raise SdlabError(f"{out_dir} exists and is not an organism directory; choose another --out or pass --force")

    started = time.time()
    torch.set_num_threads(threads)
    documents, tokenizer, token_lists, model = untrained_organism(spec, seed=seed, corpus=corpus)
    corpus_seconds = time.time() - started
    bf16 = bf16_is_native()
    targets = target_lists(tokenizer, documents, token_lists)
    losses = pretrain(model, token_lists, spec, seed=seed, bf16=bf16, show_progress=show_progress, targets=targets)
    train_seconds = time.time() - started - corpus_seconds

    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.config._attn_implementation = "sdpa"
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    stats = {
        "size": size, "seed": seed, "settings_hash": expected, "corpus_version": version, "settings": asdict(spec),
        "parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer),
        "corpus_documents": len(documents), "corpus_tokens": sum(map(len, token_lists)),
        "trained_tokens": spec.steps * spec.batch * spec.seq_len + spec.extend_steps * spec.extend_batch * spec.extend_seq_len,
        "weights_sha256": weights_sha256(staging), "cpu": cpu_class(),
        "corpus_seconds": round(corpus_seconds, 1), "train_seconds": round(train_seconds, 1), "threads": torch.get_num_threads(),
        "precision": "bf16 autocast" if bf16 else "fp32",  # the same seed trains to other weights in each
        **loss_summary(losses, main_steps=spec.steps),
        "documents_by_kind": _count_kinds(documents),
    }
    if measure:
        from sdlab.organism.measure import measure_abilities, missing_abilities

        measured = time.time()
        stats["abilities"] = measure_abilities(model, tokenizer, seed=seed, n=MEASURE_N, quick=size == "test", strategies=version != 10)
        stats["missing_abilities"] = missing_abilities(stats["abilities"])
        stats["measure_seconds"] = round(time.time() - measured, 1)
        for ability in stats["missing_abilities"]:
            logger.warning("organism %s-seed%d lacks %s; see its README.md, Health", size, seed, ability)
    stats["build_seconds"] = round(time.time() - started, 1)
    from sdlab.organism.card import model_card

    model_card(stats).save(staging / "README.md")
    (staging / BUILD_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    logger.info("organism built in %s (%.0f s)", out_dir, stats["build_seconds"])
    return out_dir


def _tokenizer_training_texts(documents: list[dict]) -> list[str]:
    """Chats with their role names (so those merge too), without the special tokens."""
    texts = []
    for d in documents[:2000]:
        if "text" in d:
            texts.append(d["text"])
        else:
            texts.append(f"user\n{d['messages'][0]['content']}\nassistant\n{d['response']}\n")
    return texts


def _count_kinds(documents: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in documents:
        counts[d["kind"]] = counts.get(d["kind"], 0) + 1
    return counts
