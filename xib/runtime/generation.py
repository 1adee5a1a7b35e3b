"""Batched generation with per-request options, token counts and streamed text.

With the options `GenerationOptions.from_model(cfg.model.generation)` gives, the LLM is called with
exactly the arguments evaluation has always used (greedy or beam search), so figures do not move.
Sampling (`temperature > 0`, `top_p`, `seed`), `stop` strings and a smaller `max_new_tokens` are what
a chat request may ask for on top.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class GenerationOptions:
    """How one prompt is answered. `temperature == 0` means the model's own decoding (greedy/beams)."""

    max_new_tokens: int
    min_new_tokens: int = 1
    num_beams: int = 1
    length_penalty: float = 1.0
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @classmethod
    def from_model(cls, gen: Any) -> GenerationOptions:
        """The decoding `model.generation` configures (what evaluation uses)."""
        return cls(
            max_new_tokens=int(gen.max_new_tokens),
            min_new_tokens=int(gen.min_length),
            num_beams=int(gen.num_beams),
            length_penalty=float(gen.length_penalty),
        )

    def with_request(self, **changes: Any) -> GenerationOptions:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def llm_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": min(self.min_new_tokens, self.max_new_tokens),
        }
        if self.sampling:
            kwargs.update(num_beams=1, do_sample=True, temperature=self.temperature, top_p=self.top_p)
            return kwargs
        kwargs["num_beams"] = self.num_beams
        if self.num_beams > 1:  # length_penalty only means something to beam search
            kwargs["length_penalty"] = self.length_penalty
        kwargs["do_sample"] = False
        return kwargs


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"


class TextStream:
    """The answer text of one row as its tokens arrive: stripped like the final answer, cut at the
    first stop string, and handing out only text no later token can change."""

    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self.tokenizer, self.stop = tokenizer, tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.sent = ""
        self.finished: str | None = None  # finish reason once the row is done
        self.text = ""  # the whole answer, once finished

    def _text(self) -> str:
        return str(self.tokenizer.decode(self.ids, skip_special_tokens=True)).lstrip()

    def _cut(self, text: str) -> tuple[str, bool]:
        hits = [text.find(s) for s in self.stop if s in text]
        return (text[: min(hits)], True) if hits else (text, False)

    def feed(self, token: int) -> str:
        """Take one generated token; return the text it makes final (maybe empty)."""
        if self.finished is not None:
            return ""
        if token == self.tokenizer.eos_token_id:
            return self.finish("stop")
        self.ids.append(int(token))
        text, stopped = self._cut(self._text())
        if stopped:
            self.text = text.strip()
            return self._emit(self.text, "stop")
        safe = text.rstrip()  # trailing space may still end the answer (stripped) or be followed
        if "\ufffd" in safe:  # half a multi-byte character: wait for the rest
            safe = safe[: safe.index("\ufffd")]
        for s in self.stop:  # a stop string may be starting at the end: hold that part back
            for k in range(min(len(s) - 1, len(safe)), 0, -1):
                if safe.endswith(s[:k]):
                    safe = safe[:-k]
                    break
        return self._emit(safe, None)

    def finish(self, reason: str) -> str:
        """The row ended (end of sequence, or `max_new_tokens`): the rest of its text."""
        if self.finished is not None:
            return ""
        text, stopped = self._cut(self._text())
        self.text = text.strip()
        return self._emit(self.text, "stop" if stopped else reason)

    def _emit(self, text: str, finished: str | None) -> str:
        if finished is not None:
            self.finished = finished
        if not text.startswith(self.sent):  # a later token re-decoded earlier text: send nothing new
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta


OnText = Callable[[int, str], None]  # (row of the call's prompts, new text)


class _RowStreamer:
    """A transformers streamer feeding each row's new token to its TextStream."""

    def __init__(self, streams: Sequence[TextStream], on_text: OnText, offset: int) -> None:
        self.streams, self.on_text, self.offset = streams, on_text, offset
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen and value.dim() == 2:  # generate() first shows the prompt ids
            self.prompt_seen = True
            return
        self.prompt_seen = True
        for row, token in enumerate(value.reshape(-1).tolist()):
            delta = self.streams[row].feed(int(token))
            if delta:
                self.on_text(self.offset + row, delta)

    def end(self) -> None:
        pass


def generate(
    model: Any,
    prompts: Sequence[Sequence[Any]],
    options: GenerationOptions,
    batch_size: int = 32,
    on_text: OnText | None = None,
) -> list[Completion]:
    """Answers to filled prompts (`xib.models.xinstructblip.fill_slots`), `batch_size` per LLM call
    (left padding, KV cache). `on_text(row, delta)` receives each answer's text as it is generated
    (greedy or sampled decoding; beam search answers arrive whole)."""
    import torch

    tokenizer = model.tokenizer
    out: list[Completion] = []
    size = max(1, int(batch_size))
    with torch.no_grad():
        for start in range(0, len(prompts), size):
            chunk = list(prompts[start : start + size])
            batch = model.collate([(p, None) for p in chunk], padding_side="left")
            embeds, _ = model.embed(batch)
            streams = [TextStream(tokenizer, options.stop) for _ in chunk]
            kwargs = options.llm_kwargs()
            if on_text is not None and kwargs["num_beams"] == 1:
                kwargs["streamer"] = _RowStreamer(streams, on_text, start)
            if options.seed is not None:
                torch.manual_seed(int(options.seed))
            ids = model.llm.generate(
                inputs_embeds=embeds,
                attention_mask=batch.attention_mask.to(model.device),
                **kwargs,
                use_cache=True,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            prompt_tokens = batch.attention_mask.sum(dim=1).tolist()
            for row, (stream, seq) in enumerate(zip(streams, ids.tolist())):
                if "streamer" not in kwargs:  # beams (or no listener): read the row now
                    for token in seq:
                        stream.feed(int(token))
                        if stream.finished is not None:
                            break
                delta = stream.finish("length")
                if delta and on_text is not None:
                    on_text(start + row, delta)
                out.append(
                    Completion(
                        text=stream.text,
                        prompt_tokens=int(prompt_tokens[row]),
                        completion_tokens=len(stream.ids),
                        finish_reason=str(stream.finished),
                    )
                )
    return out
