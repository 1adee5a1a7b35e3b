"""Property-based fuzzing of every annotation reader and media decoder of the intake: random and
mutated inputs give a clean result or one DataError, never another exception and never a hang (each
input runs under a 30 s alarm; the whole test under pytest-timeout)."""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from data_fixtures import clip, cloud, jpeg, npz, png, sound, wav_extra_chunks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xib.config import XibConfig
from xib.data.annotations import csv_records, header_index, loads_strict
from xib.data.config import DataConfig, DiscrnConfig, IngestConfig, LimitsConfig, ValidateConfig
from xib.data.discrn_released import read_released
from xib.data.ingest import Context, read_audiocaps, read_cap3d, read_coco, read_msrvtt
from xib.data.rules import check_media
from xib.data.text import clean_caption, quoted
from xib.errors import DataError

LIMITS = LimitsConfig()
# the released DisCRn reader reads only these sections of the config
DISCRN_CFG = XibConfig(data=DataConfig(discrn=DiscrnConfig(), limits=LIMITS, validate=ValidateConfig()))
FUZZ = settings(
    max_examples=40,
    deadline=None,  # no wall-clock assertion; a hang is caught by the alarm below
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@contextlib.contextmanager
def bounded(seconds: int = 30) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise AssertionError(f"an input ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def clean_or_data_error(call: Callable[[], Any]) -> None:
    with bounded():
        try:
            call()
        except DataError as err:
            assert "\n" not in str(err) and "\x1b" not in str(err)


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """`seed` with a few byte flips, overwrites with extreme values, insertions or a truncation."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "max", "insert", "truncate", "zero"]))
        if action == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif action == "max":
            data[pos : pos + 4] = b"\xff\xff\xff\x7f"
        elif action == "zero":
            data[pos : pos + 4] = b"\x00\x00\x00\x00"
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[pos:]
    return bytes(data)


SEEDS = {
    "image": [jpeg(16, 12), jpeg(16, 12, progressive=True), png("P", 12, 10), png("RGBA", 12, 10)],
    "audio": [
        sound(0.05),
        sound(0.05, 8000, 2, "PCM_24", "WAVEX"),
        wav_extra_chunks(0.05),
        sound(0.05, 8000, 1, "PCM_16", "FLAC"),
    ],
    "pc": [npz(cloud(64, 6)), npz(cloud(64, 3, ">f8"), compressed=True), npz(cloud(32, 3), key="pts")],
    "video": [clip(frames=3, side=16)],
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("modality", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_media_decoders(modality: str, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(SEEDS[modality]))
    sample = data.draw(st.one_of(mutated(seed), st.binary(max_size=256)))
    clean_or_data_error(lambda: check_media(modality, sample, LIMITS))


JSON_SEEDS: list = [
    [{"id": "r0", "sample_ids": ["a", "b"], "captions": ["x", "y"], "question": "which?", "label": 1}],
    {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [{"id": 2, "image_id": 1, "caption": "a cat"}],
    },
    {
        "videos": [{"video_id": "v1", "split": "train"}],
        "sentences": [{"video_id": "v1", "caption": "x", "sen_id": 0}],
    },
]
CSV_SEEDS = [
    'audiocap_id,youtube_id,start_time,caption\n1,-ab_c,30,"a dog\nbarks"\n2,xyz,0,rain\n',
    '00ab,a chair\n01cd,"a table, round"\n',
]


def _write(folder: str, name: str, text: str) -> Path:
    path = Path(folder) / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


@pytest.mark.timeout(300)
@FUZZ
@given(data=st.data())
def test_annotation_readers(data: st.DataObject) -> None:
    ctx = Context(LIMITS, IngestConfig(), 2000)
    as_json = data.draw(
        st.one_of(
            st.sampled_from(JSON_SEEDS).map(json.dumps).flatmap(lambda s: mutated(s.encode())),
            st.binary(max_size=200),
        )
    )
    as_csv = data.draw(
        st.one_of(st.sampled_from(CSV_SEEDS).flatmap(lambda s: mutated(s.encode())), st.binary(max_size=200))
    )
    with tempfile.TemporaryDirectory() as folder:
        for name, reader, raw in (
            ("coco.json", read_coco, as_json),
            ("msrvtt.json", read_msrvtt, as_json),
            ("train.csv", read_audiocaps, as_csv),
            ("cap3d.csv", read_cap3d, as_csv),
        ):
            path = Path(folder) / name
            path.write_bytes(raw)
            clean_or_data_error(lambda reader=reader, path=path: reader(path, ctx))
        released = Path(folder) / "objaverse.json"
        released.write_bytes(as_json)
        clean_or_data_error(lambda: read_released(DISCRN_CFG, "image_pc", str(released)))


@FUZZ
@given(text=st.text(max_size=300))
def test_text_rules(text: str) -> None:
    clean_or_data_error(lambda: loads_strict(text, "f.json", 32, 2**53))
    clean_or_data_error(lambda: header_index(list(csv_records(text, "f.csv")), ("a", "b"), "f.csv"))
    clean_or_data_error(lambda: clean_caption(text, "f", 1, 100))
    shown = quoted(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
