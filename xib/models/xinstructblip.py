"""X-InstructBLIP: a frozen causal LM reading soft tokens from one trainable projection per modality.

A prompt is a list of segments: `str` text, or a `MediaInput` (one input of one modality, already
encoded by its frozen encoder: `features [V, N, D]`, V = frames or segments). Each input becomes
`[cue embedded by the frozen LLM][K soft tokens of view 1][view 2]...` (or one block of K when the
projection joins the views, `model.projection.join_views`); the cue is dropped where it is switched
off (`model.prompt.use_cues`, per modality `use_cues_by_modality`). Text segments are tokenized one by one without
special tokens; the tokenizer's own start tokens (BOS) come once, at the start of the sequence.

`PromptPacker` (also `XInstructBLIP.collate`) turns `(prompt, answer)` examples into padded tensors:
token ids with placeholders where soft tokens go, the answer-only labels, and the media per
modality with the positions their soft tokens fill. The model embeds the ids with the frozen LLM's
input embeddings, writes the projected soft tokens into the placeholders and runs the LLM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from xib.errors import XibError
from xib.models.llm import freeze
from xib.models.projectors import Projection
from xib.prompts import Slot, answer_text, prompt_cues

if TYPE_CHECKING:
    from xib.models.config import GenerationConfig, ModelConfig, PromptConfig

IGNORE = -100


@dataclass
class MediaInput:
    """One encoded input: `features [V, N, D]`, `mask [V, N]` (True = real token), the Q-Former text."""

    modality: str
    features: torch.Tensor
    mask: torch.Tensor | None = None
    instruction: str = ""

    def __post_init__(self) -> None:
        if self.features.dim() != 3:
            raise ValueError(
                f"MediaInput({self.modality}): features must be [views, tokens, dim], got {tuple(self.features.shape)}"
            )
        if self.mask is not None and tuple(self.mask.shape) != tuple(self.features.shape[:2]):
            raise ValueError(
                f"MediaInput({self.modality}): mask {tuple(self.mask.shape)} does not match features "
                f"{tuple(self.features.shape[:2])}"
            )


Segment = str | MediaInput
Prompt = list[Segment]
Example = tuple[Sequence[Segment], str | None]


def fill_slots(segments: Sequence[Any], inputs: Sequence[MediaInput]) -> Prompt:
    """A model prompt from an `xib.prompts` layout: `Slot(i, modality)` becomes `inputs[i]`."""
    prompt: Prompt = []
    for segment in segments:
        if isinstance(segment, Slot):
            media = inputs[segment.index]
            if media.modality != segment.modality:
                raise ValueError(
                    f"prompt slot {segment.index} wants {segment.modality}, got {media.modality}"
                )
            prompt.append(media)
        else:
            prompt.append(segment)
    return prompt


@dataclass
class MediaBatch:
    """All views of one modality in a batch; row m is one view of one input."""

    features: torch.Tensor  # [M, N, D]
    mask: torch.Tensor  # [M, N] bool
    instr_ids: torch.Tensor | None  # [M, T] (instruction-aware projections only)
    instr_mask: torch.Tensor | None  # [M, T]
    rows: torch.Tensor  # [M] sample (batch row) the view belongs to
    starts: torch.Tensor  # [M] sequence position of the view's first soft token
    inputs: torch.Tensor  # [M] index of the MediaInput, counted over the batch in prompt order
    views: torch.Tensor  # [M] view number within its input

    def to(self, device: Any) -> MediaBatch:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return MediaBatch(**moved)


@dataclass
class PromptBatch:
    """Padded model input. `labels` is IGNORE everywhere but the answer tokens (None: no answers)."""

    input_ids: torch.Tensor  # [B, L] (soft-token positions hold the pad id)
    attention_mask: torch.Tensor  # [B, L]
    labels: torch.Tensor | None  # [B, L]
    media: dict[str, MediaBatch] = field(default_factory=dict)
    caption_ids: torch.Tensor | None = None  # [B, C] for caption anchoring
    caption_mask: torch.Tensor | None = None  # [B, C]
    padding_side: str = "right"

    def to(self, device: Any) -> PromptBatch:
        def move(x: Any) -> Any:
            return x.to(device) if isinstance(x, torch.Tensor) else x

        return PromptBatch(
            input_ids=move(self.input_ids),
            attention_mask=move(self.attention_mask),
            labels=move(self.labels),
            media={m: b.to(device) for m, b in self.media.items()},
            caption_ids=move(self.caption_ids),
            caption_mask=move(self.caption_mask),
            padding_side=self.padding_side,
        )

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def merge_text(segments: Sequence[Segment]) -> list[Segment]:
    """Adjacent text segments joined and empty ones dropped: text between two inputs is tokenized in
    one piece, as the reference tokenizes `prompt + postfix` (a subword tokenizer splits differently
    at a seam)."""
    merged: list[Segment] = []
    for segment in segments:
        if isinstance(segment, str):
            if not segment:
                continue
            if merged and isinstance(merged[-1], str):
                merged[-1] = merged[-1] + segment
                continue
        merged.append(segment)
    return merged


class PromptPacker:
    """Tokenizes and pads examples; picklable (no model weights), so it can be a DataLoader collate_fn.

    `num_tokens[m]` is K of modality m's projection; `qformer_vocab[m]` is the Q-Former vocabulary of
    an instruction-aware projection (absent: the projection does not read the instruction).
    Instruction ids come from `qformer_tokenizer` when given (e.g. bert-base-uncased for BLIP-2
    weights), else from the LLM tokenizer, taken modulo the Q-Former's vocabulary size; long
    instructions keep their last `max_instruction_tokens` tokens (InstructBLIP truncates on the left).
    For modalities in `joined_views` an input's views are joined into one (`[1, V*N, D]`) before
    projection, so it takes K soft tokens instead of V x K.
    """

    def __init__(
        self,
        tokenizer: Any,
        prompt_cfg: PromptConfig,
        num_tokens: Mapping[str, int],
        qformer_vocab: Mapping[str, int],
        max_instruction_tokens: int,
        qformer_tokenizer: Any = None,
        joined_views: Sequence[str] = (),
    ) -> None:
        self.tokenizer = tokenizer
        self.cues = prompt_cues(prompt_cfg)
        self.answer_eos = prompt_cfg.answer_eos
        template = prompt_cfg.template
        if template.count("{prompt}") != 1:
            raise XibError(f"model.prompt.template={template!r}: must contain {{prompt}} exactly once")
        self.head, self.tail = template.split("{prompt}")
        self.num_tokens = dict(num_tokens)
        self.joined = set(joined_views)
        self.qformer_vocab = dict(qformer_vocab)
        self.max_instruction_tokens = int(max_instruction_tokens)
        self.qformer_tokenizer = qformer_tokenizer
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.eos_id = tokenizer.eos_token_id
        self.start_ids = self._start_special_ids()
        self._cache: dict[str, list[int]] = {}

    def _start_special_ids(self) -> list[int]:
        """The special ids the tokenizer puts before a text (BOS for Llama), found by probing it."""
        probe = "a"
        plain = self.tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = self.tokenizer(probe, add_special_tokens=True)["input_ids"]
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return list(full[:start])
        return []

    def text_ids(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(self._cache) < 4096:
                self._cache[text] = ids
        return ids

    def views_of(self, media: MediaInput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The input's features and mask as the projection reads them (views joined or not)."""
        if media.modality not in self.joined or media.features.shape[0] == 1:
            return media.features, media.mask
        v_count, n, dim = media.features.shape
        mask = None if media.mask is None else media.mask.reshape(1, v_count * n)
        return media.features.reshape(1, v_count * n, dim), mask

    def answer_ids(self, answer: str) -> list[int]:
        ids = self.text_ids(answer_text(answer))
        return ids + [self.eos_id] if self.answer_eos and self.eos_id is not None else ids

    def instruction_ids(self, modality: str, text: str) -> list[int]:
        if self.qformer_tokenizer is not None:
            ids = list(self.qformer_tokenizer(text, add_special_tokens=True)["input_ids"])
        else:
            vocab = self.qformer_vocab[modality]
            ids = [i % vocab for i in self.text_ids(text)]
        return ids[-self.max_instruction_tokens :] if self.max_instruction_tokens > 0 else []

    def __call__(
        self,
        examples: Sequence[Example],
        padding_side: str = "right",
        captions: Sequence[str] | None = None,
    ) -> PromptBatch:
        # One pass builds the token ids, the labels and the media slots together: splitting it would
        # walk every prompt's segments twice and keep the slot positions consistent by hand.
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side={padding_side!r}: expected right or left")
        if not examples:
            raise ValueError("an empty batch")
        sequences: list[list[int]] = []
        label_rows: list[list[int]] = []
        placed: list[tuple[int, int, MediaInput]] = []  # (row, start, input)
        for row, (prompt, answer) in enumerate(examples):
            ids = list(self.start_ids)
            segments = merge_text([self.head, *prompt, self.tail])
            for segment in segments:
                if isinstance(segment, str):
                    ids += self.text_ids(segment)
                elif isinstance(segment, MediaInput):
                    if segment.modality not in self.num_tokens:
                        raise XibError(
                            f"no projection for modality {segment.modality!r} (have {sorted(self.num_tokens)})"
                        )
                    cue = self.cues[segment.modality]
                    if cue is not None:
                        ids += self.text_ids(cue)
                    placed.append((row, len(ids), segment))
                    views = self.views_of(segment)[0].shape[0]
                    ids += [self.pad_id] * (self.num_tokens[segment.modality] * views)
                else:
                    raise TypeError(
                        f"prompt segment of type {type(segment).__name__}: expected str or MediaInput"
                    )
            labels = [IGNORE] * len(ids)
            if answer is not None:
                answer_ids = self.answer_ids(answer)
                ids += answer_ids
                labels += answer_ids
            sequences.append(ids)
            label_rows.append(labels)

        length = max(len(s) for s in sequences)
        batch = len(sequences)
        input_ids = torch.full((batch, length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        labels_t = torch.full((batch, length), IGNORE, dtype=torch.long)
        offsets = []
        for row, (ids, labels) in enumerate(zip(sequences, label_rows)):
            offset = length - len(ids) if padding_side == "left" else 0
            offsets.append(offset)
            input_ids[row, offset : offset + len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, offset : offset + len(ids)] = 1
            labels_t[row, offset : offset + len(ids)] = torch.tensor(labels, dtype=torch.long)
        has_answers = any(a is not None for _, a in examples)
        media = self.pack_media(
            [m for _, _, m in placed],
            rows=[r for r, _, _ in placed],
            starts=[s + offsets[r] for r, s, _ in placed],
        )
        result = PromptBatch(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels_t if has_answers else None,
            media=media,
            padding_side=padding_side,
        )
        if captions is not None:
            if len(captions) != batch:
                raise ValueError(f"{len(captions)} captions for {batch} examples")
            cap = [self.text_ids(c) for c in captions]
            width = max(1, max(len(c) for c in cap))
            result.caption_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
            result.caption_mask = torch.zeros((batch, width), dtype=torch.long)
            for row, ids in enumerate(cap):
                result.caption_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                result.caption_mask[row, : len(ids)] = 1
        return result

    def pack_media(
        self,
        inputs: Sequence[MediaInput],
        rows: Sequence[int] | None = None,
        starts: Sequence[int] | None = None,
    ) -> dict[str, MediaBatch]:
        """Stack every view of every input, grouped by modality (tokens padded to the longest)."""
        rows = list(rows) if rows is not None else list(range(len(inputs)))
        starts = list(starts) if starts is not None else [0] * len(inputs)
        grouped: dict[str, list[int]] = {}
        for index, media in enumerate(inputs):
            grouped.setdefault(media.modality, []).append(index)
        packed: dict[str, MediaBatch] = {}
        for modality, indices in grouped.items():
            k = self.num_tokens[modality]
            seen = {i: self.views_of(inputs[i]) for i in indices}
            dims = {seen[i][0].shape[-1] for i in indices}
            if len(dims) != 1:
                raise ValueError(
                    f"{modality} inputs with different feature widths {sorted(dims)} in one batch"
                )
            n_max = max(seen[i][0].shape[1] for i in indices)
            views_total = sum(seen[i][0].shape[0] for i in indices)
            first = seen[indices[0]][0]
            features = first.new_zeros((views_total, n_max, first.shape[-1]))
            mask = torch.zeros((views_total, n_max), dtype=torch.bool)
            meta: dict[str, list[int]] = {"rows": [], "starts": [], "inputs": [], "views": []}
            instr: list[list[int]] = []
            aware = modality in self.qformer_vocab
            m = 0
            for i in indices:
                media = inputs[i]
                view_features, view_mask = seen[i]
                v_count, n = view_features.shape[:2]
                features[m : m + v_count, :n] = view_features
                mask[m : m + v_count, :n] = True if view_mask is None else view_mask.to(torch.bool)
                ids = self.instruction_ids(modality, media.instruction) if aware else []
                for v in range(v_count):
                    meta["rows"].append(rows[i])
                    meta["starts"].append(starts[i] + v * k)
                    meta["inputs"].append(i)
                    meta["views"].append(v)
                    instr.append(ids)
                m += v_count
            instr_ids = instr_mask = None
            width = max(len(x) for x in instr)
            if aware and width > 0:
                instr_ids = torch.zeros((views_total, width), dtype=torch.long)
                instr_mask = torch.zeros((views_total, width), dtype=torch.long)
                for row, ids in enumerate(instr):
                    instr_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                    instr_mask[row, : len(ids)] = 1
            packed[modality] = MediaBatch(
                features=features,
                mask=mask,
                instr_ids=instr_ids,
                instr_mask=instr_mask,
                **{key: torch.tensor(value, dtype=torch.long) for key, value in meta.items()},
            )
        return packed


@dataclass
class XibOutput:
    loss: torch.Tensor  # mean cross-entropy over all answer tokens of the batch
    per_sample_loss: torch.Tensor  # [B] mean over each sample's answer tokens
    soft_tokens: dict[str, torch.Tensor]  # modality -> [M, K, H] (rows as in batch.media)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    size = max(1, int(size))
    return [items[i : i + size] for i in range(0, len(items), size)]


class XInstructBLIP(nn.Module):
    """A frozen LLM plus one projection per modality; only the projections train."""

    checkpoint_info: dict[str, dict[str, Any]]  # per modality, the projection.json it was loaded from

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        projections: Mapping[str, Projection],
        model_cfg: ModelConfig,
        qformer_tokenizer: Any = None,
    ) -> None:
        super().__init__()
        self.llm = freeze(llm)
        self.tokenizer = tokenizer
        self.cfg = model_cfg
        self.projections = nn.ModuleDict(dict(projections))
        hidden = self.llm.get_input_embeddings().weight.shape[1]
        for modality, projection in self.projections.items():
            if projection.llm_hidden != hidden:
                raise XibError(
                    f"{modality} projection outputs width {projection.llm_hidden}, the LLM reads {hidden}"
                )
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token (load it with xib.models.llm.load_llm)")
        self.packer = PromptPacker(
            tokenizer,
            model_cfg.prompt,
            num_tokens={m: p.num_tokens for m, p in projections.items()},
            qformer_vocab={
                m: p.config.qformer_vocab_size for m, p in projections.items() if p.instruction_aware
            },
            max_instruction_tokens=model_cfg.projection.max_instruction_tokens,
            qformer_tokenizer=qformer_tokenizer,
            joined_views=[m for m, p in projections.items() if p.config.join_views],
        )

    # ---------------------------------------------------------------------------------------- basics
    def train(self, mode: bool = True) -> XInstructBLIP:
        super().train(mode)
        self.llm.eval()  # frozen: never in training mode
        return self

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.llm.get_input_embeddings()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.projections.parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """Frozen (the LLM) and trainable (the projections) parameter counts, and each projection's."""
        counts = {
            "frozen": sum(p.numel() for p in self.parameters() if not p.requires_grad),
            "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "llm": sum(p.numel() for p in self.llm.parameters()),
        }
        for modality, projection in self.projections.items():
            counts[f"projection/{modality}"] = sum(p.numel() for p in projection.parameters())
        return counts

    def collate(
        self, examples: Sequence[Example], padding_side: str = "right", captions: Sequence[str] | None = None
    ) -> PromptBatch:
        return self.packer(examples, padding_side=padding_side, captions=captions)

    # ----------------------------------------------------------------------------------- embeddings
    def project(self, media: Mapping[str, MediaBatch]) -> dict[str, torch.Tensor]:
        """Soft tokens per modality: `[M, K, H]`, one row per view."""
        out = {}
        for modality, mb in media.items():
            projection = self.projections[modality]
            dtype = next(projection.parameters()).dtype
            out[modality] = projection(
                mb.features.to(self.device, dtype),
                mb.mask.to(self.device),
                None if mb.instr_ids is None else mb.instr_ids.to(self.device),
                None if mb.instr_mask is None else mb.instr_mask.to(self.device),
            )
        return out

    def embed(self, batch: PromptBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`inputs_embeds [B, L, H]` for the LLM (soft tokens written in place) and the soft tokens."""
        embeds = self.input_embeddings(batch.input_ids.to(self.device))
        soft = self.project(batch.media)
        if soft:
            embeds = embeds.clone()
            for modality, tokens in soft.items():
                mb = batch.media[modality]
                k = tokens.shape[1]
                cols = mb.starts.to(self.device)[:, None] + torch.arange(k, device=self.device)[None, :]
                rows = mb.rows.to(self.device)[:, None].expand_as(cols)
                embeds = embeds.index_put((rows, cols), tokens.to(embeds.dtype))
        return embeds, soft

    def soft_tokens(self, media_inputs: Sequence[MediaInput]) -> list[torch.Tensor]:
        """The projected tokens of each input, views concatenated: `[V * K, H]` per input."""
        media = self.packer.pack_media(media_inputs)
        soft = self.project(media)
        pieces: list[list[tuple[int, torch.Tensor]]] = [[] for _ in media_inputs]
        for modality, tokens in soft.items():
            mb = media[modality]
            for row in range(tokens.shape[0]):
                pieces[int(mb.inputs[row])].append((int(mb.views[row]), tokens[row]))
        return [torch.cat([t for _, t in sorted(p, key=lambda x: x[0])], dim=0) for p in pieces]

    def sample_soft_tokens(
        self, batch: PromptBatch, soft: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sample's first input's soft tokens (views concatenated), padded: `[B, S, H]`, mask `[B, S]`."""
        per_row: list[list[tuple[int, int, torch.Tensor]]] = [[] for _ in range(len(batch))]
        for modality, tokens in soft.items():
            mb = batch.media[modality]
            for m in range(tokens.shape[0]):
                per_row[int(mb.rows[m])].append((int(mb.inputs[m]), int(mb.views[m]), tokens[m]))
        hidden = self.input_embeddings.weight.shape[1]
        seqs = []
        for items in per_row:
            if not items:
                seqs.append(torch.zeros((0, hidden), device=self.device))
                continue
            first = min(i for i, _, _ in items)
            seqs.append(torch.cat([t for i, _, t in sorted(items, key=lambda x: x[1]) if i == first], dim=0))
        width = max(1, max(s.shape[0] for s in seqs))
        dtype = next(iter(soft.values())).dtype if soft else torch.float32
        out = torch.zeros((len(seqs), width, hidden), device=self.device, dtype=dtype)
        mask = torch.zeros((len(seqs), width), dtype=torch.bool, device=self.device)
        rows = []
        for row, seq in enumerate(seqs):
            if seq.shape[0]:
                rows.append(torch.nn.functional.pad(seq, (0, 0, 0, width - seq.shape[0])))
                mask[row, : seq.shape[0]] = True
            else:
                rows.append(out[row])
        return torch.stack(rows), mask

    # --------------------------------------------------------------------------------------- losses
    def forward(self, batch: PromptBatch) -> XibOutput:
        """Causal LM cross-entropy on the answer tokens only."""
        if batch.labels is None:
            raise ValueError("loss needs answers: collate (prompt, answer) examples")
        embeds, soft = self.embed(batch)
        attention_mask = batch.attention_mask.to(self.device)
        labels = batch.labels.to(self.device)
        # no KV cache: one full pass, and filling a cache copies every layer's keys and values
        hidden = self.llm.base_model(
            inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        # position t predicts token t+1; the vocabulary projection runs only where an answer token follows
        targets = labels[:, 1:]
        rows, cols = torch.nonzero(targets != IGNORE, as_tuple=True)
        logits = self.llm.get_output_embeddings()(hidden[rows, cols]).float()
        token_loss = torch.nn.functional.cross_entropy(logits, targets[rows, cols], reduction="none")
        counts = torch.zeros(len(batch), device=self.device).index_add_(0, rows, torch.ones_like(token_loss))
        sums = torch.zeros(len(batch), device=self.device).index_add_(0, rows, token_loss)
        per_sample = sums / counts.clamp(min=1.0)
        loss = token_loss.mean() if token_loss.numel() else embeds.sum() * 0.0
        return XibOutput(loss=loss, per_sample_loss=per_sample, soft_tokens=soft)

    def loss(self, batch: PromptBatch) -> torch.Tensor:
        return self.forward(batch).loss

    def anchor_loss(
        self, batch: PromptBatch, output: XibOutput, weight: float, per_view: bool = False
    ) -> torch.Tensor:
        """Caption anchoring for this batch (collated with `captions=`), see xib.models.anchor.

        With `per_view`, every view (video frame, audio segment) of the first input is anchored to
        the caption on its own; otherwise the views' tokens are concatenated and only the first
        caption-length positions are anchored.
        """
        from xib.models.anchor import caption_anchor_loss

        if batch.caption_ids is None or batch.caption_mask is None:
            raise ValueError("anchor loss needs the captions: collate(..., captions=[...])")
        caption_ids = batch.caption_ids.to(self.device)
        caption_mask = batch.caption_mask.to(self.device)
        if per_view:
            tokens, rows = self.view_soft_tokens(batch, output.soft_tokens)
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=self.device)
            caption_ids, caption_mask = caption_ids[rows], caption_mask[rows]
        else:
            tokens, mask = self.sample_soft_tokens(batch, output.soft_tokens)
        return caption_anchor_loss(tokens, mask, caption_ids, caption_mask, self.input_embeddings, weight)

    def view_soft_tokens(
        self, batch: PromptBatch, soft: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first input's soft tokens one view per row `[R, K, H]`, and each row's sample index `[R]`."""
        first_input: dict[int, int] = {}
        for modality in soft:
            mb = batch.media[modality]
            for m in range(len(mb.rows)):
                row = int(mb.rows[m])
                first_input[row] = min(first_input.get(row, int(mb.inputs[m])), int(mb.inputs[m]))
        views, rows = [], []
        for modality, tokens in soft.items():
            mb = batch.media[modality]
            for m in range(tokens.shape[0]):
                row = int(mb.rows[m])
                if int(mb.inputs[m]) == first_input[row]:
                    views.append(tokens[m])
                    rows.append(row)
        return torch.stack(views), torch.tensor(rows, device=self.device)

    # ------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Sequence[Segment]],
        generation_cfg: GenerationConfig | None = None,
        batch_size: int = 32,
    ) -> list[str]:
        """Answers to `prompts`, batched (left padding) with the LLM's KV-cached `generate`."""
        gen = generation_cfg if generation_cfg is not None else self.cfg.generation
        answers: list[str] = []
        for chunk in _chunks(list(prompts), batch_size):
            batch = self.collate([(p, None) for p in chunk], padding_side="left")
            embeds, _ = self.embed(batch)
            beams: dict[str, int | float] = {"num_beams": int(gen.num_beams)}
            if beams["num_beams"] > 1:  # length_penalty only means something to beam search
                beams["length_penalty"] = float(gen.length_penalty)
            out = self.llm.generate(
                inputs_embeds=embeds,
                attention_mask=batch.attention_mask.to(self.device),
                max_new_tokens=int(gen.max_new_tokens),
                min_new_tokens=int(gen.min_length),
                **beams,
                do_sample=False,
                use_cache=True,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
            answers += [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
        return answers

    @torch.no_grad()
    def score_candidates(
        self,
        prompts: Sequence[Sequence[Segment]],
        candidates: Sequence[str] | Sequence[Sequence[str]],
        batch_size: int = 64,
    ) -> list[list[float]]:
        """Mean LM loss of each candidate answer after each prompt (lower = more likely).

        `candidates` is one list for all prompts, or one list per prompt.
        """
        if candidates and isinstance(candidates[0], str):
            per_prompt = [list(candidates)] * len(prompts)  # type: ignore[list-item]
        else:
            per_prompt = [list(c) for c in candidates]  # type: ignore[arg-type]
        if len(per_prompt) != len(prompts):
            raise ValueError(f"{len(per_prompt)} candidate lists for {len(prompts)} prompts")
        pairs = [(i, c) for i, cands in enumerate(per_prompt) for c in cands]
        losses: list[float] = []
        for chunk in _chunks(pairs, batch_size):
            batch = self.collate([(prompts[i], c) for i, c in chunk])
            losses += self.forward(batch).per_sample_loss.tolist()
        scores: list[list[float]] = []
        at = 0
        for cands in per_prompt:
            scores.append(losses[at : at + len(cands)])
            at += len(cands)
        return scores
