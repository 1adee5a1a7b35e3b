"""DisCRn construction: exact balance, ground truth from attributes, unseen and distinct entities,
hard pairs, determinism, and conversion of the released X-InstructBLIP files."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from xib.config import load_config
from xib.data.discrn import PAIRS, TfidfEmbedder, build_discrn, discrn_path, read_discrn
from xib.data.manifest import manifest_path, read_manifest, write_manifest
from xib.data.shards import split_uri
from xib.data.world import KINDS, KINDS_BY_NAME, QUESTIONS, applicable_questions, caption
from xib.errors import DataError, XibError

MODALITIES = ("image", "pc", "audio", "video")
SPLITS = ("train", "val", "test")
N = 40


def make_manifests(cfg, per_kind: int = 3, items_per_entity: int = 2) -> None:
    """Entity j of a kind goes to split j % 3; each entity has `items_per_entity` items per modality."""
    for modality in MODALITIES:
        for s, split in enumerate(SPLITS):
            rows = []
            for kind in KINDS:
                for j in range(per_kind):
                    if j % len(SPLITS) != s:
                        continue
                    for k in range(items_per_entity):
                        item = f"{modality}-{kind.name}-{j}-{k}"
                        rows.append(
                            {
                                "id": item,
                                "entity_id": f"{kind.name}-{j}",
                                "kind": kind.name,
                                "modality": modality,
                                "uri": f"shard-000000.tar#{item}.bin",
                                "caption": caption(kind, modality),
                                "split": split,
                                "source": "world",
                            }
                        )
            write_manifest(pd.DataFrame(rows), manifest_path(cfg, modality, split))


@pytest.fixture
def built(xib_root: Path):
    cfg = load_config([f"data.discrn.examples_per_pair={N}"])
    make_manifests(cfg)
    build_discrn(cfg)
    return cfg


def _records(cfg, pair: str) -> list[dict]:
    return read_discrn(discrn_path(cfg, pair, "test"))


def test_labels_and_modality_orders_are_exactly_balanced(built) -> None:
    for pair, (m1, m2) in PAIRS.items():
        records = _records(built, pair)
        assert len(records) == N
        assert Counter(r["answer"] for r in records) == {"first": N // 2, "second": N // 2}
        assert Counter(r["label"] for r in records) == {0: N // 2, 1: N // 2}
        assert Counter(r["modalities"][0] for r in records) == {m1: N // 2, m2: N // 2}
        cells = Counter((r["modalities"][0], r["label"]) for r in records)
        assert set(cells.values()) == {N // 4} and len(cells) == 4
        assert all(r["question"].startswith("which of the two options") for r in records)
        assert len({r["id"] for r in records}) == N


def test_ground_truth_follows_the_attributes(built) -> None:
    by_text = {q.text: q for q in QUESTIONS}
    manifests = {m: read_manifest(manifest_path(built, m, "test")).set_index("id") for m in MODALITIES}
    for pair in PAIRS:
        for r in _records(built, pair):
            kinds = []
            for i, modality in enumerate(r["modalities"]):
                row = manifests[modality].loc[r["sample_ids"][i]]
                assert row["entity_id"] == r["entity_ids"][i] and row["caption"] == r["captions"][i]
                assert split_uri(r["media"][i])[0] == f"world/{modality}/test/shard-000000.tar"
                kinds.append(KINDS_BY_NAME[row["kind"]])
            question = by_text[r["question"]]
            assert question.answer(kinds[0], kinds[1]) == r["label"]
            assert r["answer"] == ("first", "second")[r["label"]]
            assert r["properties"]["attribute"] == question.attribute
            assert r["properties"]["values"] == [getattr(k, question.attribute) for k in kinds]
            assert sorted(r["modalities"]) == sorted(PAIRS[pair]) and r["pair"] == pair


def test_inputs_are_unseen_and_from_different_entities(built) -> None:
    seen = set()
    for modality in MODALITIES:
        for split in ("train", "val"):
            seen |= set(read_manifest(manifest_path(built, modality, split))["entity_id"])
    for pair in PAIRS:
        for r in _records(built, pair):
            assert r["entity_ids"][0] != r["entity_ids"][1]
            assert not seen & set(r["entity_ids"])


def test_the_selection_split_is_built_alike_from_other_entities(built) -> None:
    """Recipes are chosen on val DisCRn: balanced like test, from val entities only."""
    val_entities = set()
    for modality in MODALITIES:
        val_entities |= set(read_manifest(manifest_path(built, modality, "val"))["entity_id"])
    for pair, (m1, m2) in PAIRS.items():
        val = read_discrn(discrn_path(built, pair, "val"))
        assert len(val) == N and Counter(r["label"] for r in val) == {0: N // 2, 1: N // 2}
        assert Counter(r["modalities"][0] for r in val) == {m1: N // 2, m2: N // 2}
        assert all(set(r["entity_ids"]) <= val_entities for r in val)
        test_entities = {e for r in _records(built, pair) for e in r["entity_ids"]}
        assert not test_entities & {e for r in val for e in r["entity_ids"]}
        assert all(r["id"].startswith(f"{pair}-val-") for r in val)


def test_pairs_are_harder_than_random_pairs(built) -> None:
    """The partner is among the most similar captions: more similar than random applicable pairs."""
    for pair, (m1, m2) in PAIRS.items():

        def describe(kind, m1=m1, m2=m2):  # an entity seen in both modalities of the pair
            return f"{caption(kind, m1)}. {caption(kind, m2)}"

        def kind_of(r, i):
            manifest = read_manifest(manifest_path(built, r["modalities"][i], "test")).set_index("id")
            return KINDS_BY_NAME[manifest.loc[r["sample_ids"][i], "kind"]]

        embed = TfidfEmbedder([describe(k) for k in KINDS])
        hard = [
            embed.similarity(describe(kind_of(r, 0)), describe(kind_of(r, 1))) for r in _records(built, pair)
        ]
        rng = random.Random(0)
        rand = []
        while len(rand) < 400:
            a, b = rng.choice(KINDS), rng.choice(KINDS)
            if applicable_questions(a, b):
                rand.append(embed.similarity(describe(a), describe(b)))
        assert sum(hard) / len(hard) > sum(rand) / len(rand) + 0.05, pair


def test_same_seed_same_file_other_seed_other_file(built, xib_root: Path) -> None:
    first = {pair: discrn_path(built, pair, "test").read_bytes() for pair in PAIRS}
    build_discrn(built)
    assert first == {pair: discrn_path(built, pair, "test").read_bytes() for pair in PAIRS}
    other = load_config([f"data.discrn.examples_per_pair={N}", "data.discrn.seed=11"])
    build_discrn(other)
    assert first["image_pc"] != discrn_path(other, "image_pc", "test").read_bytes()


def test_too_few_items_and_unbalanceable_sizes_are_clear_errors(xib_root: Path) -> None:
    cfg = load_config(["data.discrn.examples_per_pair=2000", "data.discrn.max_attempts_per_example=1"])
    make_manifests(cfg, items_per_entity=1)
    with pytest.raises(DataError, match="balanced image_pc examples"):
        build_discrn(cfg)
    with pytest.raises(XibError, match="multiple of 4"):
        build_discrn(load_config(["data.discrn.examples_per_pair=42"]))


def _released_entries(n: int) -> list[dict]:
    entries = []
    for i in range(n):
        entries.append(
            {
                "id": f"r{i}",
                "sample_ids": [f"obj{i}a", f"obj{i}b"],
                "captions": [f"caption {i} a", f"caption {i} b"],
                "properties": [f"props {i} a", f"props {i} b"],
                "question": "which entity is larger",
                "label": 0 if i % 3 else 1,
                "start_seconds": [10.0, 20.5],
                "captions_pred_image": [f"pred {i} a", f"pred {i} b"],
            }
        )
    return entries


def test_released_files_are_converted_and_balanced(xib_root: Path) -> None:
    release = xib_root / "release"
    release.mkdir()
    (release / "objaverse.json").write_text(json.dumps(_released_entries(12)))
    (release / "audiocaps.json").write_text(json.dumps(_released_entries(8)))
    cfg = load_config(
        [
            "data.discrn.source=released",
            "data.discrn.pairs=[image_pc,audio_video]",  # the release's two
            f"data.discrn.released.image_pc={release / 'objaverse.json'}",
            f"data.discrn.released.audio_video={release / 'audiocaps.json'}",
            f"data.discrn.media_roots.image={release / 'img'}",
            f"data.discrn.media_roots.video={release / 'vid'}",
        ]
    )
    summary = build_discrn(cfg)
    assert list(summary["image_pc"]) == ["test"]  # a release has no selection split
    assert summary["image_pc"]["test"]["labels"] == {"first": 6, "second": 6}
    assert summary["image_pc"]["test"]["first_modality"] == {"image": 6, "pc": 6}
    originals = {e["id"]: e for e in _released_entries(12)}
    for r in _records(cfg, "image_pc"):
        src = originals[r["id"]]
        swapped = r["modalities"] == ["pc", "image"]
        order = [1, 0] if swapped else [0, 1]
        assert r["sample_ids"] == [src["sample_ids"][i] for i in order]
        assert r["captions"] == [src["captions"][i] for i in order]
        assert r["label"] == (1 - src["label"] if swapped else src["label"])
        assert r["question"] == "which of the two options is larger?"
        image = r["media"][r["modalities"].index("image")]
        sid = src["sample_ids"][0]
        assert image == str(release / "img" / f"compressed_imgs_view2/Cap3D_imgs_view2/{sid}_2.jpeg")
        assert (
            r["media"][r["modalities"].index("pc")]
            == f"{src['sample_ids'][1]}/{src['sample_ids'][1]}_8192.npz"
        )
    video_first = [r for r in _records(cfg, "audio_video") if r["modalities"][0] == "video"]
    assert video_first and video_first[0]["media"][0].endswith("_10.mp4")
    assert video_first[0]["media"][1].endswith("_20.flac")

    bad = _released_entries(3)
    del bad[2]["question"]
    (release / "objaverse.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"row 3: 'question'"):
        build_discrn(cfg)


def test_cli_command_writes_both_pairs(xib_root: Path, capsys) -> None:
    from xib.cli import main

    make_manifests(load_config())
    assert main(["discrn", "data.discrn.examples_per_pair=8"]) == 0
    out = capsys.readouterr().out
    for pair in PAIRS:
        assert f"discrn {pair} val: 8 examples" in out and f"discrn {pair} test: 8 examples" in out
    assert main(["discrn", "data.discrn.examples_per_pair=6"]) == 1


def test_every_unordered_pair_and_the_papers_two_are_unchanged_by_the_others(built, xib_root: Path) -> None:
    import itertools

    assert {tuple(sorted(p)) for p in PAIRS.values()} == {
        tuple(sorted(p)) for p in itertools.combinations(MODALITIES, 2)
    }
    assert list(built.data.discrn.pairs) == list(PAIRS) and list(built.eval.discrn.pairs) == list(PAIRS)
    six = {pair: discrn_path(built, pair, "test").read_bytes() for pair in PAIRS}
    two = load_config([f"data.discrn.examples_per_pair={N}", "data.discrn.pairs=[image_pc,audio_video]"])
    build_discrn(two)  # each pair draws from its own generator: adding pairs moves none of the others
    assert six["image_pc"] == discrn_path(two, "image_pc", "test").read_bytes()
    assert six["audio_video"] == discrn_path(two, "audio_video", "test").read_bytes()
    for pair in PAIRS:  # every pair asks about more than one attribute
        assert len({r["properties"]["attribute"] for r in _records(built, pair)}) >= 3, pair


def test_the_demo_llm_corpus_compares_every_pair_in_both_orders(built) -> None:
    """The shipped demo LLM was pre-trained on comparisons over every ordered pair: no new pair
    needs a new corpus (which would re-pre-train it)."""
    ordered = set(built.data.corpus.comparison_pairs)
    for m1, m2 in PAIRS.values():
        assert {f"{m1}_{m2}", f"{m2}_{m1}"} <= ordered
