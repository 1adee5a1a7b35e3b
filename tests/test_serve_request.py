"""Chat requests read into what the runtime answers: media parts decoded under the ingest limits
(WAV and FLAC audio, point clouds), earlier turns as text, every refusal naming its field."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from xib.config import load_config
from xib.data.media import encode
from xib.serve.errors import ApiError
from xib.serve.request import parse_chat


def _flac(wave: np.ndarray, rate: int) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        pcm = (np.clip(wave, -1, 1) * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _audio(data: bytes, fmt: str) -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


@pytest.fixture(scope="module")
def cfg():
    return load_config(["data.validate.max_audio_seconds=2"])


def test_wav_and_flac_decode_to_the_same_samples(cfg) -> None:
    wave = (0.3 * np.sin(np.linspace(0, 200, 8000))).astype(np.float32)
    parsed = []
    for data, fmt in ((encode("audio", wave, sample_rate=8000), "wav"), (_flac(wave, 8000), "flac")):
        content = [_audio(data, fmt), {"type": "text", "text": "what is this sound ?"}]
        body = {"model": "xib", "messages": [{"role": "user", "content": content}]}
        chat = parse_chat(body, cfg.serve, cfg.data.validate)
        [(modality, (samples, rate))] = chat.media
        assert modality == "audio" and rate == 8000 and chat.question == "what is this sound ?"
        parsed.append(samples)
    assert parsed[0].shape == parsed[1].shape and np.abs(parsed[0] - parsed[1]).max() < 1e-3
    # `xib ask` and the pyfunc read .flac files through the runtime's decoder, the same one
    from xib.runtime.runner import decode_bytes

    samples, rate = decode_bytes("audio", _flac(wave, 8000))
    assert rate == 8000 and np.array_equal(samples, parsed[1])


def test_audio_over_the_ingest_limit_is_413_naming_the_rule(cfg) -> None:
    long = encode("audio", np.zeros(16000 * 3, dtype=np.float32), sample_rate=16000)
    body = {
        "model": "xib",
        "messages": [{"role": "user", "content": [_audio(long, "wav"), {"type": "text", "text": "hi"}]}],
    }
    with pytest.raises(ApiError) as err:
        parse_chat(body, cfg.serve, cfg.data.validate)
    assert err.value.status == 413 and "messages[0].content[0].input_audio" in err.value.message
    assert "data.validate.max_audio_seconds" in err.value.message


def test_earlier_turns_become_text_before_the_last_question(cfg) -> None:
    cloud = encode("pc", np.zeros((64, 3), dtype=np.float32))
    part = {
        "type": "input_point_cloud",
        "input_point_cloud": {"data": base64.b64encode(cloud).decode(), "format": "npy"},
    }
    body = {"model": "xib", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [part, {"type": "text", "text": "what is it ?"}]},
        {"role": "assistant", "content": "a cube"},
        {"role": "user", "content": "how big ?"},
    ], "max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": "x", "n": 2}  # fmt: skip
    chat = parse_chat(body, cfg.serve, cfg.data.validate)
    assert chat.question == "be brief question: what is it ? answer: a cube how big ?"
    assert [m for m, _ in chat.media] == ["pc"] and chat.n == 2
    assert chat.options == {"max_new_tokens": 5, "temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": ("x",)}
    far = encode("pc", np.full((8, 3), 5000.0, dtype=np.float32))
    part["input_point_cloud"]["data"] = base64.b64encode(far).decode()
    with pytest.raises(ApiError, match="max_abs_coordinate") as err:
        parse_chat(body, cfg.serve, cfg.data.validate)
    assert err.value.status == 400 and err.value.param == "messages[1].content[0].input_point_cloud"
