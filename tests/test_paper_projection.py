"""A released X-InstructBLIP projection (LAVIS format) converted by xib gives what LAVIS gives.

The reference is LAVIS's own `Blip2VicunaXInstruct.generate` (loaded by file path, tests/lavis_reference.py)
on an instance whose parts are set by hand instead of downloaded: its Q-Former (LAVIS's Qformer.py,
BERT with cross-attention, under the transformers-5 shims DESIGN.md lists), query tokens, modality
LayerNorm and LLM projection hold random weights, saved as a release file; the frozen LLM is a tiny
Llama with a Llama-style tokenizer given Vicuna v1.1's conventions. The LLM's `generate` is
intercepted, so what is compared is exactly what LAVIS feeds the LLM: the input embeddings (prefix,
cue, soft tokens, prompt, postfix) and their attention mask, against xib's `embed` of the same
prompt under model=vicuna7b's prompt settings.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from lavis_reference import _module, qformer_shims, reference
from omegaconf import OmegaConf

from xib.errors import XibError
from xib.models.config import LLMConfig, ModelConfig, ProjectionConfig

WORDS = "USER ASSISTANT image 3d audio video describe the what is this a short caption of color shape".split()
K, D_ENC, HIDDEN, LLM_HIDDEN = 4, 24, 32, 16


def llama_style_tokenizer(directory: Path) -> None:
    """A small sentencepiece-style tokenizer (Metaspace, BOS `<s>` first), saved the HF way."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("".join(WORDS)) | set(":?.\n"))
    vocab = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -1.0) for w in WORDS] + [(w, -1.5) for w in WORDS] + [(c, -5.0) for c in chars]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos_token=True
    )
    fast.save_pretrained(str(directory))


def bert_tokenizer(directory: Path):
    """The Q-Former's tokenizer as LAVIS's init_tokenizer makes it (BERT, `[DEC]` as BOS)."""
    from transformers import BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ":", "?", "."]
    (directory / "vocab.txt").write_text("\n".join(v.lower() for v in vocab) + "\n")
    tokenizer = BertTokenizer(str(directory / "vocab.txt"), truncation_side="left")
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def lavis_xinstruct(load):
    """LAVIS's Blip2VicunaXInstruct class, its heavy imports stubbed (none is on the generate path)."""
    qformer_shims()
    stubs = {
        "peft": _module("peft", get_peft_model=None, LoraConfig=None, TaskType=None),
        "fairscale": _module("fairscale"),
        "fairscale.nn": _module("fairscale.nn"),
        "fairscale.nn.checkpoint": _module("fairscale.nn.checkpoint"),
        "fairscale.nn.checkpoint.checkpoint_activations": _module("x", checkpoint_wrapper=lambda m: m),
        "lavis.tasks.multimodal_classification": _module("x", MultimodalClassificationTask=type("T", (), {})),
        "lavis.processors.blip_processors": _module("x", BlipCaptionProcessor=type("P", (), {})),
        "lavis.models.ulip_models.ULIP_models": _module("x", ULIP_PointBERT=None),
        "lavis.common.utils": _module("x", get_abs_path=lambda p: p, is_url=lambda s: False),
    }
    sys.modules.update(stubs)
    dist = sys.modules["lavis.common.dist_utils"]
    dist.is_dist_avail_and_initialized = lambda: False
    dist.get_rank = lambda: 0
    dist.main_process = lambda f: f
    sys.modules["lavis.models"].BaseModel = load("lavis.models.base_model").BaseModel
    xinstruct = load("lavis.models.blip2_models.blip2_vicuna_xinstruct")
    qformer = load("lavis.models.blip2_models.Qformer")
    # transformers 5 no longer gives these to a model class of 4.x vintage (DESIGN.md)
    qformer.BertPreTrainedModel.all_tied_weights_keys = {}
    qformer.BertModel.invert_attention_mask = _invert_attention_mask
    qformer.BertModel.get_head_mask = lambda self, head_mask, layers: (
        [None] * layers if head_mask is None else head_mask
    )
    return xinstruct, qformer


def _invert_attention_mask(self, mask: torch.Tensor) -> torch.Tensor:
    """transformers 4.x's ModuleUtilsMixin.invert_attention_mask (1 = attend -> 0, 0 -> dtype min)."""
    extended = mask[:, None, :, :] if mask.dim() == 3 else mask[:, None, None, :]
    extended = extended.to(dtype=self.dtype)
    return (1.0 - extended) * torch.finfo(self.dtype).min


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory):
    """(reference instance, release file, llm dir, bert dir) for the image modality."""
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("xinstruct")
    llm_dir = root / "llm"
    llama_style_tokenizer(llm_dir)
    torch.manual_seed(0)
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(str(llm_dir))
    llm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(raw),
            hidden_size=LLM_HIDDEN,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            bos_token_id=1,
            eos_token_id=2,
        )
    )
    llm.save_pretrained(str(llm_dir))
    bert = bert_tokenizer(root / "bert")
    with reference() as load:
        xinstruct, qformer = lavis_xinstruct(load)
        config = qformer.BertConfig(
            vocab_size=len(bert),
            hidden_size=HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=512,
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            layer_norm_eps=1e-12,
        )
        config.encoder_width, config.add_cross_attention = D_ENC, True
        config.cross_attention_freq, config.query_length = 2, K
        model = xinstruct.Blip2VicunaXInstruct.__new__(xinstruct.Blip2VicunaXInstruct)
        torch.nn.Module.__init__(model)
        model.image_Qformer = qformer.BertLMHeadModel(config=config)
        model.image_Qformer.cls = None  # as X-InstructBLIP drops it
    model.image_query_tokens = torch.nn.Parameter(torch.randn(1, K, HIDDEN))
    model.image_ln = torch.nn.LayerNorm(D_ENC)
    model.image_llm_proj = torch.nn.Linear(HIDDEN, LLM_HIDDEN)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                torch.randn(p.shape, generator=generator) * 0.3
                + (1.0 if p.dim() == 1 and p.shape[0] in (HIDDEN, D_ENC) and p.sum() == p.numel() else 0.0)
            )
    model.eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("llm_model.")}
    file = root / "image_qformer.pth"
    torch.save({"model": state, "config": {"run": {"lr": 1e-5}}, "epoch": 9}, file)
    return model, file, llm_dir, root / "bert"


def attach_llm(model, llm_dir: Path) -> list[dict]:
    """The LLM and tokenizer as LAVIS's __init__ sets them (Vicuna v1.1 conventions), `generate` captured."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
    # LAVIS's __init__ (blip2_vicuna_xinstruct.py): these four lines, on a slow LlamaTokenizer whose
    # BOS follows bos_token; a fast one is told so.
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    tokenizer.add_special_tokens({"bos_token": "</s>"})
    tokenizer.add_special_tokens({"eos_token": "</s>"})
    tokenizer.add_special_tokens({"unk_token": "</s>"})
    tokenizer.add_bos_token = True
    tokenizer.update_post_processor()
    llm = AutoModelForCausalLM.from_pretrained(str(llm_dir))
    llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        llm.get_input_embeddings().weight[-1] = 0
    calls: list[dict] = []

    def generate(**kwargs):
        calls.append(kwargs)
        return torch.full((kwargs["inputs_embeds"].shape[0], 1), 2, dtype=torch.long)

    llm.generate = generate
    model.llm_tokenizer, model.llm_model = tokenizer, llm
    return calls


def configure_reference(model, bert_dir: Path) -> None:
    """Model settings of LAVIS's blip2_xinstruct_vicuna7b.yaml that `generate` reads."""
    from transformers import BertTokenizer

    model.tokenizer = BertTokenizer.from_pretrained(str(bert_dir), truncation_side="left")
    model.modalities, model.joint_video_audio = ["image"], False
    model.prompt, model.prefix, model.postfix = "", "USER: ", "\nASSISTANT:"
    model.clean_tokenization, model.use_cues, model.enumerate_inputs = True, True, False
    model.remove_start = model.add_space = model.use_describe = model.use_caption = False
    model.special_qformer_input_prompt = False
    model.qformer_text_input, model.projection_only, model.projection_only_image = True, False, False
    model.shared_qformer, model.max_txt_len, model.num_query_token = False, 128, K
    model.image_encoder = lambda x: x  # features already encoded (xib caches them too)
    model.tokenized_prefix = model.llm_tokenizer(model.prefix, return_tensors="pt")
    cue = model.MODALITY_TO_CUE["image"].lstrip()  # clean_tokenization
    model.tokenized_cue = {"image": model.llm_tokenizer(cue, return_tensors="pt")}
    model.emb_cue = {"image": model.llm_model.get_input_embeddings()(model.tokenized_cue["image"].input_ids)}
    model.att_cue = {"image": model.tokenized_cue["image"].attention_mask}


def xib_model(file: Path, llm_dir: Path, bert_dir: Path, tmp: Path):
    from xib.models.checkpoint import compose_model
    from xib.models.convert_lavis import convert_release

    cfg = OmegaConf.merge(
        OmegaConf.structured(ModelConfig),
        OmegaConf.load(Path(__file__).resolve().parents[1] / "conf/model/vicuna7b.yaml"),
    )
    cfg.llm = OmegaConf.structured(
        LLMConfig(path=str(llm_dir), dtype="float32", special_tokens=dict(cfg.llm.special_tokens))
    )
    cfg.projection.qformer_tokenizer = str(bert_dir)
    cfg.projection.qformer_heads = 4
    report = convert_release(
        file, "image", ProjectionConfig(**OmegaConf.to_container(cfg.projection)), tmp / "image"
    )
    assert report["kind"] == "qformer" and report["num_query_tokens"] == K and report["trained_with_cue"]
    return compose_model(cfg, {"image": tmp / "image"}).eval(), report


@pytest.mark.parametrize("prompt", ["describe the image", "what is the color of this ?"])
def test_converted_projection_feeds_the_llm_what_lavis_feeds_it(release, tmp_path: Path, prompt: str) -> None:
    from xib.models.xinstructblip import MediaInput, fill_slots
    from xib.prompts import instruction_prompt

    reference_model, file, llm_dir, bert_dir = release
    calls = attach_llm(reference_model, llm_dir)
    configure_reference(reference_model, bert_dir)
    features = torch.randn(2, 7, D_ENC, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        reference_model.generate({"image": features, "prompt": [prompt, prompt]}, num_beams=1, max_length=3)
    theirs, their_mask = calls[0]["inputs_embeds"], calls[0]["attention_mask"]

    model, _ = xib_model(file, llm_dir, bert_dir, tmp_path)
    inputs = [MediaInput("image", features[i : i + 1], instruction=prompt) for i in range(2)]
    # xib's instruction layout puts one space before the instruction; LAVIS strips the prompt and a
    # sentencepiece-style tokenizer (Metaspace, as here) reads both the same
    prompts = [fill_slots(instruction_prompt("image", prompt), [media]) for media in inputs]
    batch = model.collate([(p, None) for p in prompts], padding_side="left")
    with torch.no_grad():
        ours, soft = model.embed(batch)
    assert batch.input_ids[0, 0].item() == model.tokenizer.convert_tokens_to_ids("</s>")  # BOS is </s>
    assert model.tokenizer.pad_token == "[PAD]" and model.tokenizer.unk_token == "</s>"
    assert ours.shape == theirs.shape and torch.equal(batch.attention_mask, their_mask)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    # the soft tokens themselves: where LAVIS put them, after BOS, "USER: " and the cue
    start = int(batch.media["image"].starts[0])
    torch.testing.assert_close(soft["image"], theirs[:, start : start + K], atol=1e-5, rtol=1e-4)


def test_linear_variant_and_nocue_checkpoints_convert(tmp_path: Path) -> None:
    from xib.models.checkpoint import load_projection
    from xib.models.convert_lavis import convert_release

    ln, proj, llm_proj = (
        torch.nn.LayerNorm(D_ENC),
        torch.nn.Linear(D_ENC, K * 8),
        torch.nn.Linear(8, LLM_HIDDEN),
    )
    state = {f"pc_ln.{k}": v for k, v in ln.state_dict().items()}
    state |= {f"pc_projection.{k}": v for k, v in proj.state_dict().items()}
    state |= {f"pc_llm_proj.{k}": v for k, v in llm_proj.state_dict().items()}
    torch.save({"model": state}, tmp_path / "pc_linear_nocue.pth")
    report = convert_release(tmp_path / "pc_linear_nocue.pth", "pc", ProjectionConfig(), tmp_path / "pc")
    assert report["kind"] == "linear" and not report["trained_with_cue"]
    # the command: same result where it is told to write, and a one-line refusal for a wrong modality
    from xib.cli import main

    assert (
        main(
            [
                "convert",
                "lavis",
                str(tmp_path / "pc_linear_nocue.pth"),
                "modality=pc",
                f"out={tmp_path / 'cli'}",
            ]
        )
        == 0
    )
    cli_weights, direct = (
        load_projection(tmp_path / "cli")[0].state_dict(),
        projection_weights(tmp_path / "pc"),
    )
    assert cli_weights.keys() == direct.keys() and all(torch.equal(cli_weights[k], direct[k]) for k in direct)
    assert (
        main(
            [
                "convert",
                "lavis",
                str(tmp_path / "pc_linear_nocue.pth"),
                "modality=audio",
                f"out={tmp_path / 'x'}",
            ]
        )
        == 1
    )
    projection, info = load_projection(tmp_path / "pc")
    assert info["provenance"]["source"]["trained_with_cue"] is False
    features = torch.randn(3, 5, D_ENC)
    expected = llm_proj(proj(ln(features).mean(1, keepdim=True)).reshape(3, K, -1))  # LAVIS's linear path
    torch.testing.assert_close(projection(features, torch.ones(3, 5, dtype=torch.bool)), expected)


def projection_weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "projection.safetensors"))


def test_release_refused_with_the_keys_named(release, tmp_path: Path) -> None:
    from xib.models.convert_lavis import convert_release

    model, file, _, _ = release
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("llm_model.")}
    base = ProjectionConfig(qformer_heads=4)
    missing = dict(state)
    missing.pop("image_llm_proj.bias")
    torch.save({"model": missing}, tmp_path / "missing.pth")
    with pytest.raises(XibError, match="language_projection.bias"):
        convert_release(tmp_path / "missing.pth", "image", base, tmp_path / "out")
    torch.save({"model": {**state, "image_mystery": torch.zeros(1)}}, tmp_path / "unknown.pth")
    with pytest.raises(XibError, match="image_mystery"):
        convert_release(tmp_path / "unknown.pth", "image", base, tmp_path / "out")
    wrong = {**state, "image_query_tokens": torch.zeros(1, K, HIDDEN + 1)}
    torch.save({"model": wrong}, tmp_path / "shape.pth")
    with pytest.raises(XibError, match="query_tokens"):
        convert_release(tmp_path / "shape.pth", "image", base, tmp_path / "out")
    torch.save({"model": state, "hook": types.SimpleNamespace(x=1)}, tmp_path / "pickled.pth")
    with pytest.raises(XibError, match="pickled object"):
        convert_release(tmp_path / "pickled.pth", "image", base, tmp_path / "out")
    with pytest.raises(XibError, match="modality=image"):
        convert_release(file, "pc", base, tmp_path / "out")
    assert not (tmp_path / "out").exists()
