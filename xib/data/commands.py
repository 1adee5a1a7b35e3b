"""`xib` commands of the data room."""

from xib.commands import command
from xib.config import load_config


@command("world")
def world(overrides: list[str]) -> int:
    """Generate the synthetic world: entities, media shards and manifests per modality and split."""
    from xib.data.generate import generate_world

    cfg = load_config(overrides)
    summary = generate_world(cfg)
    items = sum(summary["items"].values())
    print(
        f"world: {summary['entities']} entities, {items} items, "
        f"{summary['bytes']['total'] / 1e6:.1f} MB in {summary['seconds']['total']:.1f} s "
        f"-> {cfg.paths.data}/world"
    )
    for modality in ("image", "pc", "audio", "video"):
        count = sum(v for k, v in summary["items"].items() if k.startswith(f"{modality}/"))
        seconds = summary["seconds"][modality]
        print(
            f"  {modality:<6} {count:>7} items  {count / max(seconds, 1e-9):8.1f} items/s  "
            f"{summary['bytes'][modality] / 1e6:8.1f} MB"
        )
    return 0


@command("ingest")
def ingest_command(overrides: list[str]) -> int:
    """Convert a real caption data set (coco|audiocaps|cap3d|msrvtt) into manifests + shards."""
    from xib.data.ingest import ingest

    summary = ingest(load_config(overrides))
    splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    primary = sum(summary["splits"].values())
    others = "".join(
        f", plus {sum(v.values())} {m} items"
        for m, v in summary["modalities"].items()
        if m != summary["modality"]
    )
    print(
        f"ingest {summary['format']}: {primary} {summary['modality']} items ({splits}){others}, "
        f"{summary['entities']} entities, {summary['missing_media_skipped']} rows without media skipped"
    )
    return 0


@command("validate")
def validate_command(overrides: list[str]) -> int:
    """Check every manifest and medium under data/world (Great Expectations + media checks)."""
    from xib.data.validate import validate

    report = validate(load_config(overrides))
    rates = ", ".join(f"{m} {v['items']} ({v['items_per_s']:.0f}/s)" for m, v in report["modalities"].items())
    print(f"validate: {report['items']} items ok: {rates}; report {report['report']}")
    return 0


@command("instruct")
def instruct_command(overrides: list[str]) -> int:
    """Instruction data (caption, filtered QA, classification) from the manifests' captions."""
    from xib.data.instruct import build_instruct

    cfg = load_config(overrides)
    summary = build_instruct(cfg)
    for modality, splits in summary["modalities"].items():
        parts = []
        for split, stats in splits.items():
            counts = " ".join(f"{task} {n}" for task, n in stats["records"].items())
            kept = stats["qa_verdicts"].get("kept", 0)
            parts.append(f"{split}: {counts} (qa kept {kept}/{stats['qa_proposed']})")
        print(f"instruct {modality:<6} " + "; ".join(parts))
    print(f"-> {cfg.paths.data}/instruct (generator {summary['generator']})")
    return 0


@command("discrn")
def discrn_command(overrides: list[str]) -> int:
    """DisCRn cross-modal pairs (every pair of image, pc, audio, video) with balanced first/second answers."""
    from xib.data.discrn import build_discrn

    cfg = load_config(overrides)
    for pair, by_split in build_discrn(cfg).items():
        for split, counts in by_split.items():
            print(
                f"discrn {pair} {split}: {counts['examples']} examples, answers {counts['labels']}, "
                f"first input {counts['first_modality']} -> {cfg.paths.data}/discrn/{pair}/{split}.json"
            )
    return 0


def _datasets(overrides: list[str]) -> tuple[list[str], list[str]]:
    """Split `world instruct` style data set names from Hydra `key=value` overrides."""
    names = [a for a in overrides if "=" not in a]
    return names, [a for a in overrides if "=" in a]


@command("data-track")
def data_track(overrides: list[str]) -> int:
    """Record data/world, data/instruct, data/discrn (or the ones named) in DVC; print their hashes."""
    from xib.data.versioning import track

    names, rest = _datasets(overrides)
    for name, md5 in track(load_config(rest), names or None).items():
        print(f"{name}: {md5}")
    return 0


@command("data-push")
def data_push(overrides: list[str]) -> int:
    """Push the DVC-tracked data sets to infra.dvc_remote_url (local folder or s3://)."""
    from xib.data.versioning import push

    names, rest = _datasets(overrides)
    print(f"pushed {push(load_config(rest), names or None)} file(s)")
    return 0


@command("data-pull")
def data_pull(overrides: list[str]) -> int:
    """Pull the DVC-tracked data sets from infra.dvc_remote_url into the workspace."""
    from xib.data.versioning import pull

    names, rest = _datasets(overrides)
    stats = pull(load_config(rest), names or None)
    print(f"fetched {stats.get('fetched', 0)} file(s); workspace: {stats.get('stats', {})}")
    return 0
