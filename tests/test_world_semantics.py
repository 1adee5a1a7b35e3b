from collections import Counter

from xib.data.world import KINDS, QUESTIONS, applicable_questions, caption, facts
from xib.prompts import Slot, discrn_prompt, render_text

CUES = {"image": " image: ", "pc": " 3d: ", "audio": " audio: ", "video": " video: "}


def test_world_has_enough_kinds_and_each_modality_names_the_kind():
    assert len(KINDS) >= 12
    for modality in ("image", "pc", "audio", "video"):
        captions = Counter(caption(k, modality) for k in KINDS)
        assert max(captions.values()) == 1, f"{modality} captions must tell kinds apart"


def test_captions_say_only_what_the_modality_shows():
    dog = next(k for k in KINDS if k.name == "dog")
    assert dog.colour not in caption(dog, "pc") and dog.size in caption(dog, "pc")
    assert dog.size not in caption(dog, "image") and "home" in caption(dog, "image")
    assert dog.sound in caption(dog, "audio") and dog.colour not in caption(dog, "audio")
    assert dog.motion in caption(dog, "video")
    assert all(dog.name not in caption(dog, m) for m in CUES)
    assert any("dog" in fact for fact in facts(dog))


def test_questions_have_symmetric_ground_truth():
    for first in KINDS:
        for second in KINDS:
            for question, label in applicable_questions(first, second):
                assert question.answer(second, first) == 1 - label
    assert len({q.attribute for q in QUESTIONS}) >= 5


def test_discrn_prompt_renders_paper_layout():
    segments = discrn_prompt(["image", "pc"], "which of the two options is larger?", "PREFIX.")
    assert segments[1] == Slot(0, "image") and segments[2] == Slot(1, "pc")
    text = render_text(segments, ["a red cube in a city", "a large cone"], CUES)
    assert (
        text
        == "PREFIX. image: a red cube in a city 3d: a large cone question: which of the two options is larger? answer:"
    )


def test_an_uncued_slot_is_its_caption_after_a_space():
    segments = discrn_prompt(["image", "pc"], "which of the two options is larger?", "PREFIX.")
    text = render_text(segments, ["a red cube in a city", "a large cone"], {**CUES, "image": None})
    assert (
        text
        == "PREFIX. a red cube in a city 3d: a large cone question: which of the two options is larger? answer:"
    )
