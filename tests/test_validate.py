"""`xib validate` on valid data: the report, the GX suites, and the config-driven bounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xib.config import load_config
from xib.data import media
from xib.data.sample import write_sample_corpus
from xib.data.validate import validate
from xib.errors import DataError


@pytest.fixture
def corpus(xib_root: Path) -> Path:
    write_sample_corpus(
        xib_root / "data", load_config().data.world, items={"image": 8, "audio": 4, "pc": 4, "video": 4}
    )
    return xib_root


def test_report_counts_suites_and_html(corpus: Path) -> None:
    report = validate(load_config())
    assert report["ok"] is True and report["items"] == 20
    assert {m: v["items"] for m, v in report["modalities"].items()} == {
        "audio": 4,
        "image": 8,
        "pc": 4,
        "video": 4,
    }
    assert all(v["items_per_s"] > 0 for v in report["modalities"].values())
    suites = {e["suite"] for e in report["expectations"]}
    assert suites == {"manifest_common", "metadata_image", "metadata_audio", "metadata_pc", "metadata_video"}
    assert all(e["success"] for e in report["expectations"])
    assert len(report["manifests"]) == 8
    on_disk = json.loads((corpus / "data/reports/validate.json").read_text())
    assert on_disk["ok"] is True and on_disk["items"] == 20
    assert "Validation passed" in (corpus / "data/reports/validate.html").read_text()
    assert not [p for p in (corpus / "data/reports").iterdir() if p.name.startswith(".")]


def test_bounds_come_from_config(corpus: Path) -> None:
    with pytest.raises(DataError, match="media file is at most 1000 bytes"):
        validate(load_config(["data.validate.max_media_bytes=1000"]))
    with pytest.raises(DataError, match="points is 4096"):
        validate(load_config(["data.validate.points=4096"]))
    with pytest.raises(DataError, match=r"audio/train/manifest.parquet, row 0: sample_rate is 22050"):
        validate(load_config(["data.validate.sample_rate=22050"]))
    assert validate(load_config(["data.validate.points=0", "data.validate.check_checksum=false"]))["ok"]


def test_only_selected_modalities_present(xib_root: Path) -> None:
    write_sample_corpus(xib_root / "data", load_config().data.world, items={"pc": 4})
    report = validate(load_config())
    assert list(report["modalities"]) == ["pc"]


def test_no_manifest_is_an_error(xib_root: Path) -> None:
    with pytest.raises(DataError, match="at least one manifest exists"):
        validate(load_config())
    assert json.loads((xib_root / "data/reports/validate.json").read_text())["ok"] is False


def test_jpeg_and_local_files_are_accepted(corpus: Path) -> None:
    import io

    import numpy as np
    from PIL import Image

    from xib.data.manifest import read_manifest, sha256, write_manifest

    path = corpus / "data/world/image/train/manifest.parquet"
    df = read_manifest(path)
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 99, np.uint8)).save(buf, format="JPEG")
    (path.parent / "local").mkdir()
    (path.parent / "local/photo.jpg").write_bytes(buf.getvalue())
    df.loc[0, "uri"], df.loc[0, "checksum"] = "local/photo.jpg", sha256(buf.getvalue())
    write_manifest(df, path)
    assert media.decode_image(buf.getvalue()).shape == (32, 32, 3)
    assert validate(load_config())["ok"]
