"""The demo LLM, the toy world's "Vicuna": a word-level tokenizer and a small LlamaForCausalLM
pre-trained on `data/world/corpus.txt`, then checked on text-only DisCRn (its ceiling).

`bootstrap_llm(cfg)` writes `artifacts/bootstrap/llm/` (save_pretrained model + fast tokenizer,
`ceiling.json`, `provenance.json`). Weights shipped in the repository (`assets/bootstrap/llm/`,
made by this same function) are copied instead of pre-training when their corpus hash and config
match this run's; anything else rebuilds them.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.config import to_dict
from xib.data.corpus import (
    Comparison,
    comparable_kind_pairs,
    comparisons,
    corpus_path,
    heldout_kind_pairs,
)
from xib.errors import XibError
from xib.hashing import sha256_file
from xib.io import atomic_path
from xib.prompts import ANSWERS, answer_text
from xib.schedule import lr_factor

if TYPE_CHECKING:
    from xib.config import XibConfig
    from xib.models.bootstrap_config import LLMPretrainConfig

SPECIALS = ("<s>", "</s>", "<pad>", "<unk>")
REPO = Path(__file__).resolve().parents[2]
# Settings that change how fast a run goes, not what it makes.
_NOT_IN_MATCH = ("threads", "log_every", "eval_every")


# --- tokenizer ---------------------------------------------------------------------------------


def build_tokenizer(lines: Sequence[str], min_frequency: int = 1) -> Any:
    """A word-level fast tokenizer trained on `lines`: words and single punctuation marks are tokens,
    whitespace separates and is never a token, so tokenizing prompt segments one by one (without BOS)
    gives exactly the ids of the whole prompt. `<s>` starts every encoding that asks for special tokens.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    trainer = trainers.WordLevelTrainer(
        vocab_size=1_000_000,
        min_frequency=int(min_frequency),
        special_tokens=list(SPECIALS),
        show_progress=False,
    )
    core.train_from_iterator(lines, trainer=trainer)
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", core.token_to_id("<s>"))]
    )
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


# --- model -------------------------------------------------------------------------------------


def build_model(arch: Any, tokenizer: Any, seed: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(  # type: ignore[call-arg]  # rope_theta: a real LlamaConfig kwarg its stubs omit
        vocab_size=len(tokenizer),
        hidden_size=int(arch.hidden_size),
        intermediate_size=int(arch.intermediate_size),
        num_hidden_layers=int(arch.num_hidden_layers),
        num_attention_heads=int(arch.num_attention_heads),
        num_key_value_heads=int(arch.num_key_value_heads),
        max_position_embeddings=int(arch.max_position_embeddings),
        rope_theta=float(arch.rope_theta),
        tie_word_embeddings=bool(arch.tie_word_embeddings),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(int(seed))
    return LlamaForCausalLM(config)


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


# --- pre-training ------------------------------------------------------------------------------


def pack_rows(docs: Sequence[Sequence[Any]], seq_len: int, rng: random.Random) -> list[list[Any]]:
    """Whole documents, in a shuffled order, greedily packed into rows of at most `seq_len` tokens."""
    order = list(range(len(docs)))
    rng.shuffle(order)
    rows: list[list[Any]] = []
    row: list[Any] = []
    for i in order:
        doc = list(docs[i])[:seq_len]
        if len(row) + len(doc) > seq_len:
            rows.append(row)
            row = []
        row.extend(doc)
    if row:
        rows.append(row)
    return rows


def answer_weights(ids: Sequence[int], marker: Sequence[int], weight: float) -> list[float]:
    """Loss weight per token: `weight` on the token right after `marker` ("answer :"), else 1."""
    out = [1.0] * len(ids)
    n = len(marker)
    for i in range(n, len(ids)):
        if list(ids[i - n : i]) == list(marker):
            out[i] = weight
    return out


def _batches(
    docs: Sequence[Sequence[tuple[int, float]]], seq_len: int, batch_size: int, pad_id: int, seed: int
) -> Any:
    """Endless (input_ids, attention_mask, loss weights) batches of (token, weight) documents; each
    pass over the corpus repacks it. Padding has weight 0."""
    import torch

    rng = random.Random(seed)
    while True:
        rows = pack_rows(docs, seq_len, rng)
        for start in range(0, len(rows) - batch_size + 1, batch_size):
            chunk = rows[start : start + batch_size]
            ids = torch.full((len(chunk), seq_len), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), seq_len), dtype=torch.long)
            weights = torch.zeros((len(chunk), seq_len))
            for r, row in enumerate(chunk):
                ids[r, : len(row)] = torch.tensor([t for t, _ in row])
                weights[r, : len(row)] = torch.tensor([w for _, w in row])
                mask[r, : len(row)] = 1
            yield ids, mask, weights


def weighted_lm_loss(logits: Any, ids: Any, weights: Any) -> Any:
    """Next-token cross-entropy, each target token weighted (all ones: the plain causal-LM loss)."""
    import torch

    targets, w = ids[:, 1:], weights[:, 1:]
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none"
    )
    return (ce * w.reshape(-1)).sum() / w.sum().clamp_min(1e-8)


def pretrain(
    model: Any,
    tokenizer: Any,
    lines: Sequence[str],
    pretrain_cfg: LLMPretrainConfig,
    probe: Callable[[Any], str] | None = None,
) -> dict[str, Any]:
    """Causal-LM pre-training on the corpus lines (`<s> line </s>`, packed); returns loss statistics.
    `probe(model)`, every `eval_every` steps, returns a line to report (e.g. the ceiling so far)."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(pretrain_cfg.threads)
    torch.manual_seed(pretrain_cfg.seed)
    encoded = tokenizer(list(lines), add_special_tokens=False)["input_ids"]
    marker = tokenizer(" answer:", add_special_tokens=False)["input_ids"]
    weight = pretrain_cfg.answer_loss_weight
    docs = []
    for ids in encoded:
        doc = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
        docs.append(list(zip(doc, answer_weights(doc, marker, weight))))
    steps, seq_len = pretrain_cfg.steps, pretrain_cfg.seq_len
    if max(len(d) for d in docs) > seq_len:
        raise XibError(
            f"bootstrap.llm.pretrain.seq_len={seq_len} is shorter than the longest corpus line "
            f"({max(len(d) for d in docs)} tokens)"
        )
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": pretrain_cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=pretrain_cfg.lr,
        betas=(float(pretrain_cfg.betas[0]), float(pretrain_cfg.betas[1])),
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, pretrain_cfg.warmup_steps, steps, pretrain_cfg.min_lr_ratio),
    )
    batches = _batches(docs, seq_len, pretrain_cfg.batch_size, tokenizer.pad_token_id, pretrain_cfg.seed)
    model.train()
    losses: list[float] = []
    started = time.perf_counter()
    log_every = max(1, pretrain_cfg.log_every)
    with tqdm(total=steps, desc="pre-train demo LLM", unit="step", file=sys.stderr, mininterval=2.0) as bar:
        for step in range(steps):
            ids, mask, weights = next(batches)
            loss = weighted_lm_loss(model(input_ids=ids, attention_mask=mask).logits, ids, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), pretrain_cfg.grad_clip)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if (step + 1) % log_every == 0 or step + 1 == steps:
                recent = sum(losses[-log_every:]) / len(losses[-log_every:])
                bar.set_postfix(loss=f"{recent:.4f}", lr=f"{schedule.get_last_lr()[0]:.2e}")
            bar.update(1)
            every = pretrain_cfg.eval_every
            if probe is not None and every > 0 and (step + 1) % every == 0 and step + 1 < steps:
                model.eval()
                bar.write(
                    f"step {step + 1}: loss {sum(losses[-log_every:]) / len(losses[-log_every:]):.4f} {probe(model)}"
                )
                model.train()
    model.eval()
    tail = losses[-log_every:]
    return {
        "steps": steps,
        "tokens_per_step": pretrain_cfg.batch_size * seq_len,
        "first_loss": losses[0] if losses else None,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "seconds": time.perf_counter() - started,
    }


# --- the text-only DisCRn ceiling --------------------------------------------------------------


def ceiling_sets(cfg: XibConfig) -> tuple[dict[str, list[Comparison]], dict[str, list[Comparison]]]:
    """(held-out, seen) comparisons per ordered modality pair of `bootstrap.llm.ceiling.pairs`."""
    ceiling = cfg.bootstrap.llm.ceiling
    held = heldout_kind_pairs(cfg.data.corpus)
    seen_pairs = [p for p in comparable_kind_pairs() if p not in set(held)]
    heldout: dict[str, list[Comparison]] = {}
    seen: dict[str, list[Comparison]] = {}
    rng = random.Random(cfg.data.corpus.seed + 1)
    for order in ceiling.pairs:
        examples = comparisons([order], held, cfg.model.prompt)
        if ceiling.max_examples > 0:
            examples = rng.sample(examples, min(len(examples), ceiling.max_examples))
        heldout[order] = examples
        universe = comparisons([order], seen_pairs, cfg.model.prompt)
        seen[order] = rng.sample(universe, min(len(universe), ceiling.seen_examples))
    return heldout, seen


def _by_length(token_lists: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices grouped by token length (batches need no padding, so positions stay exact)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(token_lists):
        groups[len(ids)].append(i)
    out = []
    for length in sorted(groups):
        idx = groups[length]
        out += [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]
    return out


def score_logits(
    model: Any, tokenizer: Any, prompts: Sequence[str], answer_eos: bool, batch_size: int = 64
) -> list[int]:
    """Per prompt, the answer (0 first, 1 second) whose tokens (then EOS) have the higher log-probability."""
    import torch

    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    candidates = []
    for answer in ANSWERS:
        ids = tokenizer(answer_text(answer), add_special_tokens=False)["input_ids"]
        candidates.append(ids + ([tokenizer.eos_token_id] if answer_eos else []))
    scores = torch.zeros(len(prompts), len(candidates))
    with torch.no_grad():
        for batch in _by_length(prompt_ids, batch_size):
            n = len(prompt_ids[batch[0]])
            for c, cand in enumerate(candidates):
                ids = torch.tensor([prompt_ids[i] + cand for i in batch])
                logprobs = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
                targets = ids[:, n:]
                picked = logprobs[:, n - 1 : -1].gather(-1, targets.unsqueeze(-1)).squeeze(-1)
                scores[batch, c] = picked.sum(-1)
    return scores.argmax(-1).tolist()


def generate_answers(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 64
) -> list[str]:
    """Greedy continuations of each prompt, decoded without special tokens."""
    import torch

    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    out = [""] * len(prompts)
    with torch.no_grad():
        for batch in _by_length(prompt_ids, batch_size):
            ids = torch.tensor([prompt_ids[i] for i in batch])
            generated = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=int(max_new_tokens),
                do_sample=False,
                num_beams=1,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            texts = tokenizer.batch_decode(generated[:, ids.shape[1] :], skip_special_tokens=True)
            for i, text in zip(batch, texts):
                out[i] = text.strip()
    return out


def _accuracy(picks: Sequence[int | None], labels: Sequence[int]) -> float:
    return sum(int(p == y) for p, y in zip(picks, labels)) / max(1, len(labels))


def evaluate_ceiling(model: Any, tokenizer: Any, cfg: XibConfig) -> dict[str, Any]:
    """Text-only DisCRn accuracy by ordered modality pair, scored by answer log-probability ("logits")
    and by greedy generation read with the paper's normalisation ("generate")."""
    from xib.answers import interpreter

    ceiling = cfg.bootstrap.llm.ceiling
    answer_eos = cfg.model.prompt.answer_eos
    interpret: Callable[[str, Sequence[str]], int | None] = interpreter(cfg.eval.discrn)
    heldout, seen = ceiling_sets(cfg)
    result: dict[str, Any] = {
        "heldout_kind_pairs": [list(p) for p in heldout_kind_pairs(cfg.data.corpus)],
        "examples": {},
        "logits": {},
        "generate": {},
        "unreadable_generations": {},
        "seen_logits": {},
        "samples": {},
    }
    for order, examples in heldout.items():
        labels = [e.label for e in examples]
        prompts = [e.prompt for e in examples]
        picks = score_logits(model, tokenizer, prompts, answer_eos, ceiling.batch_size)
        texts = generate_answers(model, tokenizer, prompts, ceiling.max_new_tokens, ceiling.batch_size)
        read = [interpret(t, e.modalities) for t, e in zip(texts, examples)]
        result["examples"][order] = len(examples)
        result["logits"][order] = _accuracy(picks, labels)
        result["generate"][order] = _accuracy(read, labels)
        result["unreadable_generations"][order] = sum(r is None for r in read)
        result["samples"][order] = dict(Counter(texts).most_common(3))
        seen_examples = seen[order]
        seen_picks = score_logits(
            model, tokenizer, [e.prompt for e in seen_examples], answer_eos, ceiling.batch_size
        )
        result["seen_logits"][order] = _accuracy(seen_picks, [e.label for e in seen_examples])
    mins = {s: min(result[s].values()) for s in ("logits", "generate")} if heldout else {}
    result["min"] = mins
    result["target"] = ceiling.target
    result["meets_target"] = bool(mins) and all(v >= ceiling.target for v in mins.values())
    return result


# --- the stage ---------------------------------------------------------------------------------


def _match_config(cfg: XibConfig) -> dict[str, Any]:
    """What the weights depend on beyond the corpus (the corpus hash covers its own config)."""
    llm = to_dict(cfg.bootstrap.llm)
    pretrain = {k: v for k, v in llm["pretrain"].items() if k not in _NOT_IN_MATCH}
    return {"arch": llm["arch"], "pretrain": pretrain}


def _resolve_repo_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO / p


def shipped_matches(shipped: Path, corpus_sha: str, cfg: XibConfig) -> tuple[bool, str]:
    """Whether weights in `shipped` were made from this corpus and config (and why not)."""
    provenance = shipped / "provenance.json"
    if not provenance.is_file():
        return False, f"no {provenance}"
    record = json.loads(provenance.read_text())
    if record.get("corpus_sha256") != corpus_sha:
        return False, "the corpus differs from the one the shipped weights were made from"
    if record.get("config") != _match_config(cfg):
        return False, "bootstrap.llm.arch/pretrain differ from the shipped weights' config"
    missing = [
        n for n in ("config.json", "model.safetensors", "tokenizer.json") if not (shipped / n).is_file()
    ]
    if missing:
        return False, f"shipped weights lack {missing}"
    return True, "corpus hash and config match"


def train_llm(cfg: XibConfig, corpus: Path, corpus_sha: str, target: Path) -> dict[str, Any]:
    """Train tokenizer and model on `corpus`, measure the ceiling, save everything to `target` atomically."""
    import torch
    import transformers

    llm_cfg = cfg.bootstrap.llm
    lines = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise XibError(f"{corpus}: the corpus is empty")
    started = time.perf_counter()
    tokenizer = build_tokenizer(lines, llm_cfg.arch.vocab_min_frequency)
    model = build_model(llm_cfg.arch, tokenizer, llm_cfg.pretrain.seed)
    heldout, _ = ceiling_sets(cfg)
    answer_eos = cfg.model.prompt.answer_eos

    def probe(m: Any) -> str:
        accs = {
            order: _accuracy(
                score_logits(m, tokenizer, [e.prompt for e in ex], answer_eos), [e.label for e in ex]
            )
            for order, ex in heldout.items()
        }
        return "held-out logits " + " ".join(f"{k}={v:.3f}" for k, v in accs.items())

    stats = pretrain(model, tokenizer, lines, llm_cfg.pretrain, probe)
    ceiling = evaluate_ceiling(model, tokenizer, cfg)
    provenance = {
        "command": "xib bootstrap bootstrap.llm.use_shipped=false",
        "corpus": str(corpus),
        "corpus_sha256": corpus_sha,
        "corpus_lines": len(lines),
        "corpus_config": to_dict(cfg.data.corpus),
        "prompt": to_dict(cfg.model.prompt),
        "config": _match_config(cfg),
        "parameters": count_parameters(model),
        "vocab_size": len(tokenizer),
        "pretrain": stats,
        "wall_seconds": time.perf_counter() - started,
        "threads": llm_cfg.pretrain.threads,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    with atomic_path(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "ceiling.json").write_text(json.dumps(ceiling, indent=2, sort_keys=True) + "\n")
        (tmp / "provenance.json").write_text(
            json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n"
        )
    return {"source": "trained", "ceiling": ceiling, "provenance": provenance}


def bootstrap_llm(cfg: XibConfig) -> dict[str, Any]:
    """Make `bootstrap.llm.output_dir`: copy the shipped demo LLM when it matches, else pre-train it."""
    llm_cfg = cfg.bootstrap.llm
    if not llm_cfg.enabled:
        return {"source": "disabled"}
    corpus = corpus_path(cfg)
    if not corpus.is_file():
        raise XibError(f"{corpus}: no corpus (run `xib world`, or `xib corpus` for the text alone)")
    corpus_sha = sha256_file(corpus)
    target = Path(llm_cfg.output_dir)
    if llm_cfg.use_shipped:
        shipped = _resolve_repo_path(llm_cfg.shipped_dir)
        ok, why = shipped_matches(shipped, corpus_sha, cfg)
        if ok:
            with atomic_path(target) as tmp:
                shutil.copytree(shipped, tmp)
            ceiling = json.loads((target / "ceiling.json").read_text())
            return {"source": f"shipped ({shipped})", "ceiling": ceiling}
        print(f"xib bootstrap: pre-training the demo LLM: {why}", file=sys.stderr)
    return train_llm(cfg, corpus, corpus_sha, target)


def ship_llm(cfg: XibConfig) -> Path:
    """Copy the built demo LLM (`output_dir`) into the repository's `shipped_dir`."""
    llm_cfg = cfg.bootstrap.llm
    source = Path(llm_cfg.output_dir)
    if not (source / "provenance.json").is_file():
        raise XibError(f"{source}: no demo LLM built by `xib bootstrap` here")
    target = _resolve_repo_path(llm_cfg.shipped_dir)
    with atomic_path(target) as tmp:
        shutil.copytree(source, tmp)
    return target
