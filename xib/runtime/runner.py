"""A composed XInstructBLIP with its inputs: feature caches for benchmarks, frozen encoders for raw
media; the prompt layouts a question is asked in; batched generation and scoring."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError
from xib.prompts import discrn_prompt, instruction_prompt
from xib.runtime.generation import Completion, GenerationOptions, OnText, generate

if TYPE_CHECKING:
    from xib.config import XibConfig
    from xib.models.config import PromptConfig

log = logging.getLogger(__name__)

MAX_INPUTS = 2  # the multi-input (DisCRn) prompt compares two inputs


def _progress(iterable: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)


def question_layout(
    modalities: Sequence[str], question: str, prompt_cfg: PromptConfig
) -> tuple[list[Any], list[str]]:
    """The prompt segments and each input's Q-Former text for a question over `modalities`:
    one input -> the single-input instruction layout; two -> the DisCRn layout (order kept)."""
    if not modalities:
        raise XibError("a question needs at least one media input")
    if len(modalities) > MAX_INPUTS:
        raise XibError(
            f"{len(modalities)} media inputs given: the model's prompts take one input, or two to "
            f"compare (the DisCRn layout); ask about at most {MAX_INPUTS} at a time"
        )
    if len(modalities) == 1:
        return instruction_prompt(modalities[0], question), [question]
    qtext = prompt_cfg.discrn_qformer_text
    segments = discrn_prompt(list(modalities), question, prompt_cfg.discrn_prefix)
    return segments, [qtext] * len(modalities)


class Runner:
    """An XInstructBLIP with its inputs: feature caches for benchmarks, frozen encoders for raw media.

    `batch_size` bounds every model call; `batch_size=1` is the one-sample-at-a-time baseline.
    """

    def __init__(
        self,
        model: Any,
        cfg: XibConfig,
        batch_size: int = 32,
        feature_dirs: Mapping[str, Path] | None = None,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.batch_size = max(1, int(batch_size))
        self.feature_dirs = dict(feature_dirs or {})
        self.progress = progress
        self.options = GenerationOptions.from_model(cfg.model.generation)
        self._stores: dict[str, Any] = {}

    # --- inputs -----------------------------------------------------------------------------------
    @property
    def modalities(self) -> list[str]:
        """The modalities this model reads raw media of (its encoders with a projection)."""
        encoders = getattr(self.model, "encoders", None) or {}
        return sorted(m for m in encoders if m in self.model.projections)

    def store(self, modality: str) -> Any:
        if modality not in self._stores:
            from xib.train.features import FeatureStore

            if modality not in self.feature_dirs:
                raise XibError(f"no feature cache configured for {modality}")
            self._stores[modality] = FeatureStore(self.feature_dirs[modality])
        return self._stores[modality]

    def media(self, modality: str, item_id: str, instruction: str) -> Any:
        """The cached encoder output of one item as a model input, with its Q-Former text."""
        from xib.models.xinstructblip import MediaInput

        features, mask = self.store(modality).get(item_id)
        return MediaInput(modality, features, mask, instruction=instruction)

    def encode_array(self, modality: str, array: Any, instruction: str) -> Any:
        """A decoded input (as `xib.data.media.decode` returns it) through the frozen encoder."""
        import torch

        from xib.models.xinstructblip import MediaInput

        encoders = getattr(self.model, "encoders", None)
        if encoders is None or modality not in encoders:
            have = sorted(encoders) if encoders is not None else []
            raise XibError(f"this model answers over {have}, not {modality}")
        encoder = encoders[modality]
        if modality == "audio":
            array = resample(array, int(encoder.cfg.sample_rate))
        with torch.no_grad():
            out = encoder(encoder.preprocess([array]))
        return MediaInput(modality, out.features[0].float(), out.mask[0], instruction=instruction)

    def encode(self, modality: str, data: bytes, instruction: str) -> Any:
        """Raw media bytes through the frozen encoder (as the feature cache would)."""
        return self.encode_array(modality, decode_bytes(modality, data), instruction)

    def prompt(self, media: Sequence[tuple[str, Any]], question: str, decoded: bool = False) -> Any:
        """The filled prompt of a question over media (bytes, or arrays when `decoded`)."""
        from xib.models.xinstructblip import fill_slots

        segments, qtexts = question_layout([m for m, _ in media], question, self.cfg.model.prompt)
        encode: Callable[[str, Any, str], Any] = self.encode_array if decoded else self.encode
        inputs = [encode(m, data, q) for (m, data), q in zip(media, qtexts)]
        return fill_slots(segments, inputs)

    # --- model calls ------------------------------------------------------------------------------
    def _chunks(self, n: int) -> list[range]:
        return [range(i, min(n, i + self.batch_size)) for i in range(0, n, self.batch_size)]

    def complete(
        self,
        prompts: Sequence[Sequence[Any]],
        options: GenerationOptions | None = None,
        on_text: OnText | None = None,
        batch_size: int | None = None,
    ) -> list[Completion]:
        """Answers with token counts; `options` default to the model's decoding (evaluation's)."""
        return generate(self.model, prompts, options or self.options, batch_size or self.batch_size, on_text)

    def generate(self, prompts: Sequence[Sequence[Any]], desc: str = "generate") -> list[str]:
        out: list[str] = []
        chunks = self._chunks(len(prompts))
        for chunk in _progress(chunks, len(chunks), desc, self.progress):
            out += [c.text for c in self.complete([prompts[i] for i in chunk])]
        return out

    def score(
        self, prompts: Sequence[Sequence[Any]], candidates: Sequence[Sequence[str]], desc: str = "score"
    ) -> list[list[float]]:
        """Mean LM loss of each candidate per prompt; batches hold `batch_size` (prompt, candidate) pairs."""
        out: list[list[float]] = []
        per = max(1, self.batch_size // max(1, max((len(c) for c in candidates), default=1)))
        chunks = [range(i, min(len(prompts), i + per)) for i in range(0, len(prompts), per)]
        for chunk in _progress(chunks, len(chunks), desc, self.progress):
            out += self.model.score_candidates(
                [prompts[i] for i in chunk], [list(candidates[i]) for i in chunk], batch_size=self.batch_size
            )
        return out

    def ask(self, media: Sequence[tuple[str, bytes]], question: str) -> str:
        """Answer `question` over media files of any modalities, in the layout the model was trained on."""
        return self.complete([self.prompt(media, question)])[0].text


def decode_bytes(modality: str, data: bytes) -> Any:
    """Media file bytes as the array the encoder reads (audio: `(samples, rate)`, resampled by
    `encode_array`); unreadable bytes are the user's error."""
    from xib.data.media import decode, decode_audio

    try:
        if modality == "audio":
            return decode_flac(data) if data[:4] == b"fLaC" else decode_audio(data)
        return decode(modality, data)
    except (ValueError, OSError) as err:  # PyAV's errors are OSErrors
        raise XibError(f"cannot read the {modality} input: {err}") from None


def decode_flac(data: bytes) -> tuple[Any, int]:
    """FLAC through PyAV (libav), to mono float32 like `xib.data.media.decode_audio`'s WAVs."""
    import io

    import av
    import numpy as np

    with av.open(io.BytesIO(data), mode="r", format="flac") as container:
        stream = container.streams.audio[0]
        rate = int(stream.rate or 0)
        chunks = []
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            if array.dtype.kind == "i":
                array = array.astype(np.float32) / float(2 ** (8 * array.dtype.itemsize - 1) - 1)
            channels = len(frame.layout.channels)
            # planar: [channels, samples]; packed: [1, samples * channels] interleaved
            chunks.append(array if frame.format.is_planar else array.reshape(-1, channels).T)
    if not chunks or rate <= 0:
        raise ValueError("FLAC holds no audio")
    wave = np.concatenate(chunks, axis=1).mean(axis=0)
    return wave.astype(np.float32), rate


def resample(wave: Any, rate: int) -> Any:
    """Decoded audio `(samples, rate)` linearly resampled to the encoder's sample rate."""
    import numpy as np

    if isinstance(wave, tuple):
        wave, sr = wave
    else:
        return wave
    if sr == rate or wave.size == 0:
        return wave
    n = max(1, round(wave.size * rate / sr))
    return np.interp(np.arange(n) * (sr / rate), np.arange(wave.size), wave).astype(np.float32)


def load_model_from_dirs(
    cfg: XibConfig, checkpoint_dirs: Mapping[str, str | Path], with_encoders: bool = True
) -> Runner:
    """Compose the model from projection checkpoints (and the frozen encoders) for inference."""
    import torch

    from xib.models.checkpoint import compose_model

    threads = cfg.eval.threads
    if threads > 0:
        torch.set_num_threads(threads)
    model = compose_model(
        cfg.model, {m: Path(d) for m, d in checkpoint_dirs.items()}, with_encoders=with_encoders
    )
    model.eval()
    return Runner(model, cfg, batch_size=cfg.eval.batch_size, progress=False)
