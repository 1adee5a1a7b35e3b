"""The registered model as an MLflow pyfunc: a question over a list of media files, any mix of
modalities, answered by the frozen encoders, the candidate's projections and the frozen LLM.

`mlflow.pyfunc.load_model("models:/xib@champion").predict(...)` and `mlflow models serve` take
records like `{"question": "...", "media": ["a.png", "data:audio/wav;base64,..."]}` (the logged
signature: `question` a string, `media` an array of strings; a media entry is a local path, whose
extension names its modality, or a base64 data URL, whose media type does) and return one answer
string per record. Called in Python without the signature's check, a media entry may also be a dict
with `modality` and either `path` or `data_b64`.

A path is read from the machine the model runs on: fine for `xib ask` and a local
`mlflow models serve`; `xib serve` (xib/serve/) takes media only from the request body.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError
from xib.runtime.loading import CONFIG_ARTIFACT

if TYPE_CHECKING:
    from xib.config import XibConfig

SUFFIXES = {
    ".png": "image", ".jpg": "image", ".jpeg": "image", ".wav": "audio", ".flac": "audio",
    ".npy": "pc", ".npz": "pc", ".mp4": "video", ".avi": "video", ".mov": "video",
}  # fmt: skip
MIME_MODALITY = {"image": "image", "audio": "audio", "video": "video", "application": "pc"}
PROVENANCE_ARTIFACT = "provenance"
INPUT_EXAMPLE = [{"question": "what is this ?", "media": ["photo.png"]},
                 {"question": "which of the two is bigger ?", "media": ["photo.png", "sound.wav"]}]  # fmt: skip
MODEL_CODE = Path(__file__).with_name("model_code.py")  # logged as "models from code", not pickled


def pip_requirements() -> list[str]:
    """What the served model needs: this project (xib) pins the rest."""
    from importlib.metadata import version

    return [
        f"mlflow=={version('mlflow')}",
        f"torch=={version('torch').split('+')[0]}",
        f"xib=={version('xib')}",
    ]


def signature() -> Any:
    """The logged model's signature: records of `question` (string) and `media` (array of strings)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    inputs = Schema([ColSpec(DataType.string, "question"), ColSpec(Array(DataType.string), "media")])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(DataType.string)]))


def modality_of(path: str) -> str:
    modality = SUFFIXES.get(Path(path).suffix.lower())
    if modality is None:
        raise XibError(f"{path}: cannot tell the modality from the extension (known: {sorted(SUFFIXES)})")
    return modality


def candidate_artifacts(cfg: XibConfig, staging: Path, provenance: Mapping[str, Any]) -> dict[str, str]:
    """Files and folders that make up a registered candidate, staged under `staging`.

    - `projection_<m>`: each trained projection checkpoint folder (projection.safetensors + .json);
    - `config`: the resolved config the candidate was evaluated with;
    - `provenance`: checkpoint hashes, encoder fingerprints, data hashes, metrics;
    - `llm`, `encoder_<m>`: the frozen LLM and encoders, when `gate.bundle_frozen` (small models).
    """
    from xib.scrub import scrubbed_yaml

    staging.mkdir(parents=True, exist_ok=True)
    artifacts: dict[str, str] = {}
    for modality in provenance.get("checkpoints", {}):
        artifacts[f"projection_{modality}"] = str(Path(cfg.paths.artifacts) / "align" / modality)
    config_file = staging / "config.yaml"
    config_file.write_text(scrubbed_yaml(cfg))
    artifacts[CONFIG_ARTIFACT] = str(config_file)
    prov_file = staging / "provenance.json"
    prov_file.write_text(json.dumps(dict(provenance), indent=2, sort_keys=True, default=str))
    artifacts[PROVENANCE_ARTIFACT] = str(prov_file)
    if cfg.gate.bundle_frozen:
        llm = Path(cfg.model.llm.path)
        if not (llm / "config.json").is_file():
            raise XibError(f"{llm}: no LLM to bundle with the candidate (run `xib bootstrap`)")
        artifacts["llm"] = str(llm)
        for modality in provenance.get("checkpoints", {}):
            enc = cfg.model.encoders.get(modality)
            if enc is not None and enc.path and Path(str(enc.path)).is_dir():
                artifacts[f"encoder_{modality}"] = str(enc.path)
    return artifacts


def _slim_projection_copy(src: Path, dst: Path) -> Path:
    """Only the consolidated projection (not DeepSpeed shards) travels into the registry."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("projection.safetensors", "projection.json"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    return dst


def stage_projections(artifacts: dict[str, str], staging: Path) -> dict[str, str]:
    out = dict(artifacts)
    for key, value in artifacts.items():
        if key.startswith("projection_"):
            out[key] = str(_slim_projection_copy(Path(value), staging / key))
    return out


class ServedModel:
    """What the pyfunc wrapper (`model_code.py`) delegates to: `load(artifacts)`, `predict(records)`."""

    def load(self, artifacts: Mapping[str, str]) -> None:
        from xib.runtime.loading import runner_from_artifacts

        self.runner = runner_from_artifacts(artifacts)
        self.cfg = self.runner.cfg

    def predict(self, model_input: Any) -> list[str]:
        records = _records(model_input)
        answers = []
        for record in records:
            question = str(record.get("question", "")).strip()
            if not question:
                raise XibError("each request needs a non-empty `question`")
            media = [_media_entry(m) for m in _as_list(record.get("media"))]
            if not media:
                raise XibError("each request needs at least one media file in `media`")
            answers.append(self.runner.ask(media, question))
        return answers


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return [value]
        return parsed if isinstance(parsed, list) else [parsed]
    return list(value) if isinstance(value, list | tuple) else [value]


def _records(model_input: Any) -> list[Mapping[str, Any]]:
    if hasattr(model_input, "to_dict") and hasattr(model_input, "columns"):  # pandas DataFrame
        return list(model_input.to_dict(orient="records"))
    if isinstance(model_input, Mapping):
        if "question" in model_input:
            return [model_input]
        raise XibError("a request is {'question': ..., 'media': [...]} or a list of those")
    if isinstance(model_input, Sequence) and not isinstance(model_input, str):
        return [dict(r) for r in model_input]
    raise XibError(f"cannot read a request of type {type(model_input).__name__}")


def _media_entry(entry: Any) -> tuple[str, bytes]:
    """(modality, file bytes) of one media entry."""
    if isinstance(entry, str) and entry.startswith("data:"):
        head, _, data = entry.partition(",")
        mime = head[5:].split(";")[0]
        modality = MIME_MODALITY.get(mime.split("/")[0]) if mime else None
        if not modality or not head.endswith(";base64"):
            raise XibError(
                f"{head[:40]}: a media data URL is data:<image|audio|video|application>/...;base64,..."
            )
        return modality, base64.b64decode(data)
    if isinstance(entry, str):
        path = Path(entry)
        if not path.is_file():
            raise XibError(f"{entry}: no such media file")
        return modality_of(entry), path.read_bytes()
    if isinstance(entry, Mapping):
        if entry.get("data_b64"):
            modality = entry.get("modality") or (modality_of(entry["path"]) if entry.get("path") else None)
            if not modality:
                raise XibError("a media entry with `data_b64` needs its `modality`")
            return str(modality), base64.b64decode(entry["data_b64"])
        if entry.get("path"):
            path = Path(str(entry["path"]))
            if not path.is_file():
                raise XibError(f"{path}: no such media file")
            return str(entry.get("modality") or modality_of(str(path))), path.read_bytes()
    raise XibError(f"media entry {entry!r}: expected a path or {{modality, path | data_b64}}")
