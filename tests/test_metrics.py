"""Metric implementations on known cases, and DisCRn answer normalisation."""

from __future__ import annotations

import pytest

from xib.answers import interpret_answer
from xib.eval import metrics as m
from xib.eval.discrn import picks_from_losses

FIRST = ["first", "1st", "left", "(a)"]
SECOND = ["second", "2nd", "right", "(b)"]
NAMES = {
    "image": ["image", "picture"],
    "pc": ["3d", "point cloud"],
    "audio": ["audio", "sound"],
    "video": ["video"],
}


def test_vqa_normalisation_follows_the_official_rules() -> None:
    assert m.normalize_answer("The Two dogs!") == "2 dogs"
    assert m.normalize_answer("  Yes. ") == "yes"
    assert m.normalize_answer("dont") == "don't"
    assert m.normalize_answer("an apple") == "apple"
    assert m.normalize_answer("3.5") == "3.5"  # a decimal point is kept
    assert m.normalize_answer("red,blue") == "red blue"


def test_vqa_accuracy_with_many_and_with_one_reference() -> None:
    humans = ["red"] * 2 + ["blue"] * 8
    # 2 of 10 humans said red: each leave-one-out subset gives min(1, matches/3).
    assert m.vqa_accuracy("red", humans) == pytest.approx((8 * (2 / 3) + 2 * (1 / 3)) / 10)
    assert m.vqa_accuracy("Blue.", humans) == 1.0
    assert m.vqa_accuracy("The cube", ["cube"]) == 1.0
    assert m.vqa_accuracy("sphere", ["cube"]) == 0.0
    assert m.exact_match("Three", "3") == 1.0


def test_cider_rewards_consensus_and_rejects_mismatched_ids() -> None:
    refs = {"a": ["a red ball on grass"], "b": ["a blue cube on sand"], "c": ["a green cone in water"]}
    perfect = m.cider(
        {"a": "a red ball on grass", "b": "a blue cube on sand", "c": "a green cone in water"}, refs
    )
    worse = m.cider(
        {"a": "a red ball on grass", "b": "a blue cone in water", "c": "a green cube on sand"}, refs
    )
    wrong = m.cider({"a": "dog", "b": "dog", "c": "dog"}, refs)
    assert perfect > worse > wrong == 0.0
    with pytest.raises(ValueError):
        m.cider({"a": "x"}, refs)


def test_bleu_and_rouge_are_one_on_identity_and_lower_otherwise() -> None:
    refs = {"a": ["a small red ball on the green grass"], "b": ["a large blue cube on the sand"]}
    same = {k: v[0] for k, v in refs.items()}
    assert m.bleu4(same, refs) == pytest.approx(1.0, abs=1e-6)
    assert m.rouge_l(same, refs) == pytest.approx(1.0)
    other = {"a": "a small red ball", "b": "a cube"}
    assert m.bleu4(other, refs) < 0.5
    assert 0.0 < m.rouge_l(other, refs) < 1.0
    assert m.caption_tokens("A Red, ball!") == "a red ball"


def test_classification_by_loss_and_by_generated_match() -> None:
    assert m.rank_by_loss([[2.0, 0.5, 1.0], [0.1, 0.2, 0.3]]) == [1, 0]
    assert m.accuracy(m.rank_by_loss([[2.0, 0.5], [0.1, 0.2]]), [1, 1]) == 0.5
    cands = ["cat", "dog", "wild cat"]
    assert m.match_candidate("Dog.", cands) == 1
    assert m.match_candidate("it is a wild cat", cands) == 2  # the longer candidate containing the shorter
    assert m.match_candidate("a cat or a dog", cands) is None  # two different answers is no answer
    assert m.match_candidate("a bird", cands) is None
    assert m.accuracy([None, 1], [0, 1]) == 0.5


@pytest.mark.parametrize(
    ("text", "mods", "want"),
    [
        ("first", ("image", "pc"), 0),
        ("Second.", ("image", "pc"), 1),
        ("the 1st one", ("image", "pc"), 0),
        ("2nd", ("audio", "video"), 1),
        ("left", ("image", "pc"), 0),
        ("the one on the right", ("image", "pc"), 1),
        ("(a)", ("audio", "video"), 0),
        ("(b) is bigger", ("audio", "video"), 1),
        ("the image", ("image", "pc"), 0),  # the first input's modality name
        ("the image", ("pc", "image"), 1),  # ... and symmetrically
        ("the 3d model", ("image", "pc"), 1),
        ("the sound", ("audio", "video"), 0),
        ("video", ("audio", "video"), 1),
        ("the first, not the second", ("image", "pc"), 0),  # the earliest mention decides
        ("firstly", ("image", "pc"), None),  # whole words only
        ("a", ("image", "pc"), None),
        ("neither", ("image", "pc"), None),
    ],
)
def test_discrn_answer_normalisation(text: str, mods: tuple[str, str], want: int | None) -> None:
    assert interpret_answer(text, mods, FIRST, SECOND, NAMES) is want


def test_discrn_logit_scoring_picks_the_lower_loss() -> None:
    assert picks_from_losses([[0.2, 1.5], [3.0, 0.1]]) == [0, 1]
