"""X-InstructBLIP composition: prompt packing, soft-token placement, answer-only loss, frozen LLM."""

from __future__ import annotations

import pytest
import torch

from xib.errors import XibError
from xib.models.anchor import caption_anchor_loss
from xib.models.testing import save_tiny_llm, tiny_model
from xib.models.xinstructblip import IGNORE, MediaInput, fill_slots
from xib.prompts import answer_text, discrn_prompt, instruction_prompt, prompt_cues, render_text

DIMS = {"image": 24, "video": 24, "audio": 20, "pc": 16}
TOKENS = {"image": 5, "video": 5, "audio": 3, "pc": 1}
VIEWS = {"image": 1, "video": 3, "audio": 2, "pc": 1}


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    return save_tiny_llm(tmp_path_factory.mktemp("llm") / "llm")


@pytest.fixture(scope="module")
def model(llm_dir):
    torch.set_num_threads(1)
    # the paper's layout: views apart, one query count for every modality
    return tiny_model(llm_dir, DIMS, dropout=0.0, join_views=False, num_query_tokens_by_modality={}).eval()


def media(modality, seed=0, instruction="a short description"):
    g = torch.Generator().manual_seed(seed)
    v, n, d = VIEWS[modality], TOKENS[modality], DIMS[modality]
    return MediaInput(
        modality, torch.randn(v, n, d, generator=g), torch.ones(v, n, dtype=torch.bool), instruction
    )


def test_every_modality_and_multi_input_prompts_pack_correctly(model):
    k = model.cfg.projection.num_query_tokens
    cues = {m: cue or "" for m, cue in prompt_cues(model.cfg.prompt).items()}  # the demo's, some off
    assert "" in cues.values() and any(cues.values())
    examples = [(fill_slots(instruction_prompt(m, "what is it ?"), [media(m)]), "a red cube") for m in DIMS]
    pair = fill_slots(
        discrn_prompt(["image", "pc"], "which is round ?", model.cfg.prompt.discrn_prefix),
        [media("image"), media("pc")],
    )
    examples.append((pair, "first"))
    batch = model.collate(examples)
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.labels.shape
    tok = model.tokenizer
    for row, (prompt, answer) in enumerate(examples):
        n_soft = sum(k * VIEWS[s.modality] for s in prompt if isinstance(s, MediaInput))
        text = "".join(cues[s.modality] if isinstance(s, MediaInput) else s for s in prompt)
        n_text = len(tok(text)["input_ids"])  # with BOS
        n_answer = len(tok(answer_text(answer), add_special_tokens=False)["input_ids"]) + 1  # + EOS
        assert int(batch.attention_mask[row].sum()) == n_soft + n_text + n_answer
        assert (
            int(batch.attention_mask[row, : n_soft + n_text + n_answer].sum()) == n_soft + n_text + n_answer
        )
    for modality, mb in batch.media.items():
        rows_expected = sum(
            VIEWS[modality]
            for p, _ in examples
            for s in p
            if isinstance(s, MediaInput) and s.modality == modality
        )
        assert mb.features.shape == (rows_expected, TOKENS[modality], DIMS[modality])
        assert mb.mask.all() and mb.instr_ids is not None and mb.instr_ids.shape[0] == rows_expected
        # views of one input are consecutive blocks of K placeholders, right after the cue
        for m in range(rows_expected):
            start = int(mb.starts[m])
            cue_ids = tok(cues[modality], add_special_tokens=False)["input_ids"]
            if int(mb.views[m]) == 0:
                assert batch.input_ids[mb.rows[m], start - len(cue_ids) : start].tolist() == cue_ids
            assert (batch.labels[mb.rows[m], start : start + k] == IGNORE).all()


def test_text_segments_tokenize_like_the_whole_string(model):
    prompt = instruction_prompt("image", "what colour is it ?")
    caption = "a red round cube"
    rendered = render_text(prompt, [caption], model.cfg.prompt.cues) + answer_text("red")
    # segments meet at word boundaries, as every xib.prompts segment does (each starts with a space)
    cuts = [i for i, ch in enumerate(rendered) if ch == " "][2:5]
    as_segments = [rendered[: cuts[0]], rendered[cuts[0] : cuts[2]], rendered[cuts[2] :]]
    batch = model.collate([(as_segments, None)])
    whole = model.tokenizer(rendered)["input_ids"]
    assert batch.input_ids[0].tolist() == whole


def test_labels_mask_everything_but_the_answer(model):
    examples = [
        (fill_slots(instruction_prompt("image", "what colour ?"), [media("image")]), "red"),
        (
            fill_slots(instruction_prompt("video", "what does it do ?"), [media("video")]),
            "it flies and sings",
        ),
    ]
    batch = model.collate(examples)
    eos = model.tokenizer.eos_token_id
    for row, (_, answer) in enumerate(examples):
        kept = batch.labels[row][batch.labels[row] != IGNORE].tolist()
        assert kept == model.tokenizer(answer_text(answer), add_special_tokens=False)["input_ids"] + [eos]
        n = int(batch.attention_mask[row].sum())
        assert batch.labels[row, n - len(kept) : n].tolist() == kept  # the answer ends the sequence
        assert (batch.labels[row, n:] == IGNORE).all()  # right padding


def test_soft_tokens_land_in_their_placeholders(model):
    inputs = [media("video", 1), media("pc", 2)]
    prompt = fill_slots(discrn_prompt(["video", "pc"], "which ?", ""), inputs)
    batch = model.collate([(prompt, "second")], padding_side="left")
    with torch.no_grad():
        embeds, _ = model.embed(batch)
        soft = model.soft_tokens(inputs)
    for mb_modality, index in (("video", 0), ("pc", 1)):
        mb = batch.media[mb_modality]
        start = int(mb.starts[0])
        length = soft[index].shape[0]
        assert soft[index].shape == (VIEWS[mb_modality] * 6, 32)
        torch.testing.assert_close(embeds[0, start : start + length], soft[index])


def test_joined_views_make_one_block_of_k_that_reads_every_view(llm_dir):
    joined = tiny_model(llm_dir, {"video": 24, "pc": 16}, dropout=0.0, join_views=True).eval()
    k = joined.cfg.projection.num_query_tokens
    video = media("video", 1)
    prompt = fill_slots(discrn_prompt(["video", "pc"], "which ?", ""), [video, media("pc", 2)])
    batch = joined.collate([(prompt, "second")])
    mb = batch.media["video"]
    assert mb.features.shape == (1, VIEWS["video"] * TOKENS["video"], DIMS["video"])
    torch.testing.assert_close(mb.features[0], video.features.reshape(-1, DIMS["video"]))
    with torch.no_grad():
        embeds, _ = joined.embed(batch)
        soft = joined.soft_tokens([video])[0]
        assert soft.shape == (k, 32)
        torch.testing.assert_close(embeds[0, int(mb.starts[0]) : int(mb.starts[0]) + k], soft)
        # every frame is read: changing only the last one changes the tokens
        later = MediaInput("video", video.features.clone(), video.mask, video.instruction)
        later.features[-1] = torch.randn(later.features[-1].shape)  # (a constant shift: LayerNorm removes it)
        assert not torch.allclose(joined.soft_tokens([later])[0], soft)
    apart = tiny_model(llm_dir, {"video": 24, "pc": 16}, dropout=0.0, join_views=False)
    n_apart = int(apart.collate([(prompt, "second")]).attention_mask.sum())
    assert n_apart - int(batch.attention_mask.sum()) == k * (VIEWS["video"] - 1)


def test_cues_switch_off_for_all_modalities_or_one(llm_dir):
    m = tiny_model(llm_dir, {"image": 24, "pc": 16})

    def prompt_length(modality: str) -> int:
        prompt = fill_slots(instruction_prompt(modality, "what ?"), [media(modality)])
        return m.collate([(prompt, None)]).input_ids.shape[1]

    def cue_length(modality: str) -> int:
        return len(m.tokenizer(m.cfg.prompt.cues[modality], add_special_tokens=False)["input_ids"])

    m.cfg.prompt.use_cues_by_modality = {"image": True, "pc": True}
    m.packer.cues = prompt_cues(m.cfg.prompt)
    cued = {modality: prompt_length(modality) for modality in ("image", "pc")}
    m.cfg.prompt.use_cues_by_modality = {"image": False, "pc": True}
    m.packer.cues = prompt_cues(m.cfg.prompt)
    assert cued["image"] - prompt_length("image") == cue_length("image")
    assert prompt_length("pc") == cued["pc"]
    m.cfg.prompt.use_cues, m.cfg.prompt.use_cues_by_modality = False, {}
    m.packer.cues = prompt_cues(m.cfg.prompt)
    assert all(cued[mod] - prompt_length(mod) == cue_length(mod) for mod in ("image", "pc"))


def test_gradients_reach_only_the_projections(llm_dir):
    m = tiny_model(llm_dir, {"image": 24, "pc": 16}, dropout=0.0).train()
    assert not m.llm.training and m.projections.training
    batch = m.collate([(fill_slots(instruction_prompt("image", "what ?"), [media("image")]), "a red cube")])
    m.loss(batch).backward()
    assert all(p.grad is None for p in m.llm.parameters())
    assert all(not p.requires_grad for p in m.llm.parameters())
    image_grads = [p.grad for p in m.projections["image"].parameters()]
    assert all(g is not None for g in image_grads) and sum(float(g.abs().sum()) for g in image_grads) > 0
    assert all(p.grad is None for p in m.projections["pc"].parameters())  # not in this batch
    assert {id(p) for p in m.trainable_parameters()} == {id(p) for p in m.projections.parameters()}


def test_batched_loss_equals_per_sample_loss(model):
    examples = [
        (fill_slots(instruction_prompt("image", "what colour ?"), [media("image", 3)]), "red"),
        (fill_slots(instruction_prompt("audio", "what sound is it ?"), [media("audio", 4)]), "it barks"),
        (
            fill_slots(
                discrn_prompt(["image", "pc"], "which is big ?", "select one ."),
                [media("image"), media("pc")],
            ),
            "second",
        ),
    ]
    with torch.no_grad():
        out = model(model.collate(examples))
        singles = [model(model.collate([e])).per_sample_loss[0] for e in examples]
        scores = model.score_candidates([examples[2][0]], ["first", "second"])
    torch.testing.assert_close(out.per_sample_loss, torch.stack(singles), atol=1e-5, rtol=1e-5)
    n_tokens = torch.tensor([2.0, 3.0, 2.0])  # answer words + EOS
    torch.testing.assert_close(
        out.loss, (out.per_sample_loss * n_tokens).sum() / n_tokens.sum(), atol=1e-5, rtol=1e-5
    )
    assert scores[0][1] == pytest.approx(float(singles[2]), abs=1e-5)
    assert scores[0][0] != pytest.approx(scores[0][1], abs=1e-6)


def test_loss_needs_answers_and_known_modalities(llm_dir):
    m = tiny_model(llm_dir, {"image": 24})
    with pytest.raises(ValueError, match="answers"):
        m.loss(m.collate([(["what ?"], None)]))
    with pytest.raises(XibError, match="no projection"):
        m.collate([([media("pc")], "x")])


def test_caption_anchor_loss(model):
    emb = model.input_embeddings
    ids = model.tokenizer("a red cube", add_special_tokens=False)["input_ids"]
    caption_ids = torch.tensor([ids])
    caption_mask = torch.ones_like(caption_ids)
    k = 6
    exact = torch.cat([emb.weight[ids].detach(), torch.randn(k - len(ids), emb.weight.shape[1])])[None]
    soft_mask = torch.ones(1, k, dtype=torch.bool)
    # soft tokens past the caption's length are free: exact on the paired ones = zero loss
    assert float(caption_anchor_loss(exact, soft_mask, caption_ids, caption_mask, emb, 1.0)) == pytest.approx(
        0.0
    )
    zeros = torch.zeros(1, k, emb.weight.shape[1])
    expected = emb.weight[ids].pow(2).mean() / emb.weight.pow(2).mean()
    got = caption_anchor_loss(zeros, soft_mask, caption_ids, caption_mask, emb, 2.5)
    assert float(got) == pytest.approx(2.5 * float(expected), rel=1e-5)

    # through the model: gradients reach the projection
    batch = model.collate(
        [(fill_slots(instruction_prompt("image", "describe"), [media("image")]), "a red cube")],
        captions=["a red cube"],
    )
    out = model(batch)
    anchor = model.anchor_loss(batch, out, 1.0)
    assert anchor.item() > 0
    anchor.backward()
    assert model.projections["image"].language_projection.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_per_view_anchoring_pulls_every_frame_to_the_caption(model):
    from xib.models.anchor import caption_anchor_loss as anchor_fn

    assert VIEWS["video"] > 1
    prompts = [
        (fill_slots(instruction_prompt("video", "describe"), [media("video", seed=s)]), "a red cube")
        for s in range(2)
    ]
    batch = model.collate(prompts, captions=["a red cube", "a blue cone"])
    out = model(batch)
    views, rows = model.view_soft_tokens(batch, out.soft_tokens)
    k = model.cfg.projection.num_query_tokens
    assert views.shape[:2] == (2 * VIEWS["video"], k)
    assert rows.tolist() == sorted(rows.tolist()) and set(rows.tolist()) == {0, 1}
    # each view is scored against its own sample's caption; the mean over views is the loss
    per_view = model.anchor_loss(batch, out, 1.0, per_view=True)
    mask = torch.ones(views.shape[:2], dtype=torch.bool)
    expected = anchor_fn(
        views, mask, batch.caption_ids[rows], batch.caption_mask[rows], model.input_embeddings, 1.0
    )
    assert float(per_view) == pytest.approx(float(expected))
    assert float(per_view) != pytest.approx(float(model.anchor_loss(batch, out, 1.0)))
