"""DisCRn stays zero-shot: no cross-modal example reaches the data the alignment trainer reads."""

import json
from pathlib import Path

import pytest

from xib.cli import main
from xib.config import MODALITIES, load_config
from xib.data.manifest import manifest_path, read_manifest
from xib.train.dataset import instruct_path, read_instructions

TINY = [
    "data.world.items_per_modality=48",
    "data.world.entities_per_kind=4",
    "data.discrn.examples_per_pair=8",
]


@pytest.fixture(scope="module")
def pipeline_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero-shot")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XIB_ROOT", str(root))
        for command in ("world", "instruct", "discrn"):
            assert main([command, *TINY]) == 0
        yield load_config(TINY)


def test_every_training_record_is_one_item_of_its_own_modality(pipeline_data):
    cfg = pipeline_data
    for modality in MODALITIES:
        items = set(read_manifest(manifest_path(cfg, modality, "train"))["id"])
        records = read_instructions(instruct_path(cfg, modality, "train"))
        assert records
        for record in records:
            assert record["modality"] == modality
            assert record["item_id"] in items, f"{record['id']} reads an item outside {modality}/train"
            text = f"{record['instruction']} {record['answer']}".lower()
            assert "which of the two" not in text and record["answer"] not in {"first", "second"}


def test_discrn_entities_and_items_never_appear_in_training(pipeline_data):
    cfg = pipeline_data
    trained_items, trained_entities = set(), set()
    for modality in MODALITIES:
        manifest = read_manifest(manifest_path(cfg, modality, "train")).set_index("id")
        for record in read_instructions(instruct_path(cfg, modality, "train")):
            trained_items.add(record["item_id"])
            trained_entities.add(manifest.loc[record["item_id"], "entity_id"])
    for pair in cfg.data.discrn.pairs:
        examples = json.loads((Path(cfg.paths.data) / "discrn" / pair / "test.json").read_text())
        assert examples
        for example in examples:
            assert not set(example["sample_ids"]) & trained_items
            assert not set(example["entity_ids"]) & trained_entities
