"""Given BLIP VQA / captioning checkpoints and a LLaVA-style image-text-to-text checkpoint the user saved
with ``save_pretrained`` (here: the real architectures, tiny random weights, a real tiny WordPiece
tokenizer), when ``ask`` and ``caption`` run through the registry, then answers are strings equal to
the library's own greedy decoding, choices are ranked by the decoder's log-likelihood (equal to the
library's own loss), batches equal single calls, and missing or wrong checkpoints are clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import vistrace
from vistrace.errors import BackendUnavailable
from vistrace.tools.adapters import hf_vlm
from vistrace.values import Box, Image

from .tiny_tokenizers import bert_tokenizer
from .conftest import picture, registry_with


@pytest.fixture
def registry():
    return registry_with(*hf_vlm.backends())


pytestmark = pytest.mark.usefixtures("one_thread")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CHAT_TEMPLATE = (  # a minimal chat template in the usual shape: bos, role turns, end-of-turn, generation prompt
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny random BLIP VQA + BLIP captioning (sharing one processor) and a tiny LLaVA, each in a folder."""
    torch.set_num_threads(1)
    from transformers import (BlipConfig, BlipForConditionalGeneration, BlipForQuestionAnswering,
                              BlipImageProcessor, BlipProcessor, CLIPImageProcessor, CLIPVisionConfig,
                              GenerationConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor)

    root = tmp_path_factory.mktemp("hf_vlm")
    tok = bert_tokenizer(root / "bert")
    tok.add_special_tokens({"bos_token": "[DEC]"})  # BLIP's decoder start token, as in BLIP's own tokenizer
    vocab = len(tok)
    text = dict(vocab_size=vocab, hidden_size=32, encoder_hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=64, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.sep_token_id, sep_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    cfg = BlipConfig(text_config=text, vision_config=vision, projection_dim=32, image_text_hidden_size=32)
    ids = (cfg.text_config.bos_token_id, cfg.text_config.sep_token_id, cfg.text_config.pad_token_id)
    assert all(0 <= i < vocab for i in ids) and cfg.text_config.vocab_size == vocab
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    torch.manual_seed(0)
    for name, cls in (("blip_vqa", BlipForQuestionAnswering), ("blip_caption", BlipForConditionalGeneration)):
        cls(cfg).eval().save_pretrained(root / name)
        processor.save_pretrained(root / name)

    chat_tok = bert_tokenizer(root / "bert_chat")
    chat_tok.add_special_tokens({"bos_token": "[CLS]", "eos_token": "[SEP]", "additional_special_tokens": ["<image>"]})
    image_token = chat_tok.convert_tokens_to_ids("<image>")
    llava = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=32, patch_size=8, projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(chat_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                                bos_token_id=chat_tok.bos_token_id, eos_token_id=chat_tok.eos_token_id,
                                pad_token_id=chat_tok.pad_token_id),
        image_token_index=image_token, vision_feature_layer=-1, vision_feature_select_strategy="default")
    model = LlavaForConditionalGeneration(llava).eval()
    model.generation_config = GenerationConfig(bos_token_id=chat_tok.bos_token_id, eos_token_id=chat_tok.eos_token_id,
                                               pad_token_id=chat_tok.pad_token_id)
    model.save_pretrained(root / "llava")
    clip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    LlavaProcessor(image_processor=clip, tokenizer=chat_tok, patch_size=8, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE).save_pretrained(root / "llava")
    shutil.copytree(root / "llava", root / "llava_no_template")
    (root / "llava_no_template" / "chat_template.jinja").unlink()
    (root / "dpt").mkdir()
    (root / "dpt" / "config.json").write_text('{"model_type": "dpt", "architectures": ["DPTForDepthEstimation"]}')
    return root


def library(folder, cls_name):
    from transformers import AutoProcessor

    model = getattr(transformers, cls_name).from_pretrained(folder, local_files_only=True).eval()
    return AutoProcessor.from_pretrained(folder, local_files_only=True), model


def blip_reference_logprob(folder, pil, question: str, answer: str) -> float:
    """The library's own BlipForQuestionAnswering forward with labels: its mean token loss over the answer
    ([DEC] answer [SEP], first token not predicted), times the number of predicted tokens."""
    processor, model = library(folder, "BlipForQuestionAnswering")
    tc = model.config.text_config
    labels = torch.tensor([[tc.bos_token_id, *processor.tokenizer(answer, add_special_tokens=False)["input_ids"],
                            tc.sep_token_id]])
    inputs = processor(images=pil, text=question, return_tensors="pt")
    with torch.no_grad():
        loss = model(**inputs, labels=labels).loss
    return -float(loss) * (labels.shape[1] - 1)


@pytest.mark.parametrize("question", ["what is in the picture?", "how many cats are there?"])
def test_blip_answers_like_the_library_greedy_decoding(registry, checkpoints, monkeypatch, question):
    """Given a BLIP VQA checkpoint, when ask runs with a free question, then the answer is a string equal to
    the library's generate (greedy) decoded without specials, and the same on a second call."""
    monkeypatch.setenv("VISTRACE_HF_VQA_MODEL", str(checkpoints / "blip_vqa"))
    image = picture(70, 40)
    answer = registry.get("ask")(registry, image=image, question=question)
    processor, model = library(checkpoints / "blip_vqa", "BlipForQuestionAnswering")
    with torch.no_grad():
        out = model.generate(**processor(images=image.pil, text=question, return_tensors="pt"), max_new_tokens=20,
                             do_sample=False)
    assert isinstance(answer, str)
    assert answer == processor.decode(out[0, 1:], skip_special_tokens=True).strip()
    assert registry.get("ask")(registry, image=image, question=question) == answer


@pytest.mark.parametrize("choices", ["yes,no", "red,blue,a cat", "red,red car,car"])
def test_blip_choices_are_ranked_by_answer_log_likelihood(registry, checkpoints, monkeypatch, choices):
    """Given choices, when ask runs, then it returns one of them: the one with the highest log-likelihood,
    each score equal to the library's own loss on that answer."""
    monkeypatch.setenv("VISTRACE_HF_VQA_MODEL", str(checkpoints / "blip_vqa"))
    image, question = picture(50, 60, seed=2), "what color is the car?"
    options = choices.split(",")
    answer = registry.get("ask")(registry, image=image, question=question, choices=choices)
    ranking = hf_vlm.HfVqaBackend().rank(image, question, options)
    reference = {c: blip_reference_logprob(checkpoints / "blip_vqa", image.pil, question, c) for c in options}
    for choice, score in ranking:
        assert score == pytest.approx(reference[choice], rel=1e-4, abs=1e-4)
    assert answer in options and answer == ranking[0][0] == max(reference, key=reference.get)
    assert [s for _, s in ranking] == sorted((s for _, s in ranking), reverse=True)


def test_the_trace_says_how_choices_were_decided(registry, checkpoints, monkeypatch):
    """Given a program asking with choices, when it runs, then the trace reason says the choices were ranked."""
    monkeypatch.setenv("VISTRACE_HF_VQA_MODEL", str(checkpoints / "blip_vqa"))
    run = vistrace.run("result = ask(image, 'is there a dog?', 'yes,no')", registry=registry, cache=False,
                       image=picture(40, 40))
    assert run.ok, run.error
    assert run.value in ("yes", "no")
    assert "ranks the 2 choices" in run.trace.steps[0].reason and run.trace.steps[0].backend == "hf_vqa"


def test_blip_batches_equal_single_calls(checkpoints, monkeypatch):
    """Given two images, when answers, rankings and captions are made for both at once, then each equals
    its single call."""
    monkeypatch.setenv("VISTRACE_HF_VQA_MODEL", str(checkpoints / "blip_vqa"))
    monkeypatch.setenv("VISTRACE_HF_CAPTION_MODEL", str(checkpoints / "blip_caption"))
    vqa, cap = hf_vlm.HfVqaBackend(), hf_vlm.HfCaptionBackend()
    images = [picture(70, 40, seed=3), picture(30, 50, seed=4)]
    q, options = "what is on the table?", ["a cat", "a dog", "no"]
    assert vqa.run_batch(images, question=q) == [vqa.run(image=im, question=q) for im in images]
    batch = vqa.rank_batch(images, q, options)
    for im, ranked in zip(images, batch):
        single = dict(vqa.rank(im, q, options))
        assert [c for c, _ in ranked] == sorted(single, key=single.get, reverse=True)
        for c, s in ranked:
            assert s == pytest.approx(single[c], rel=1e-4, abs=1e-4)
    assert cap.run_batch(images) == [cap.run(image=im) for im in images]


def test_ask_on_a_crop_looks_at_the_crop(registry, checkpoints, monkeypatch):
    """Given a crop, when ask ranks choices on it, then the scores are those of the crop's pixels alone."""
    monkeypatch.setenv("VISTRACE_HF_VQA_MODEL", str(checkpoints / "blip_vqa"))
    image = picture(90, 60, seed=5)
    crop = image.crop(Box(10, 5, 60, 45))
    b = hf_vlm.HfVqaBackend()
    on_crop = b.rank(crop, "is it red?", ["yes", "no"])
    alone = b.rank(Image(crop.pil.copy()), "is it red?", ["yes", "no"])
    assert [c for c, _ in on_crop] == [c for c, _ in alone]
    assert np.allclose([s for _, s in on_crop], [s for _, s in alone])
    assert registry.get("ask")(registry, image=crop, question="is it red?", choices="yes,no") == on_crop[0][0]


@pytest.mark.parametrize("prompt, new_tokens", [("", 30), ("a picture of", 30), ("a photo of", 3)])
def test_caption_is_greedy_and_deterministic(registry, checkpoints, monkeypatch, prompt, new_tokens):
    """Given a BLIP captioning checkpoint (and optionally a prompt and a token limit), when caption runs twice,
    then both captions are equal, equal the library's greedy generate, and start with the prompt."""
    monkeypatch.setenv("VISTRACE_HF_CAPTION_MODEL", str(checkpoints / "blip_caption"))
    if prompt:
        monkeypatch.setenv("VISTRACE_HF_CAPTION_PROMPT", prompt)
    monkeypatch.setenv("VISTRACE_HF_CAPTION_MAX_NEW_TOKENS", str(new_tokens))
    image = picture(64, 48, seed=6)
    first = registry.get("caption")(registry, image=image)
    assert first == registry.get("caption")(registry, image=image) and isinstance(first, str)
    processor, model = library(checkpoints / "blip_caption", "BlipForConditionalGeneration")
    enc = processor(images=image.pil, text=prompt, return_tensors="pt") if prompt else processor(images=image.pil,
                                                                                                return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False)
    assert first == processor.decode(out[0], skip_special_tokens=True).strip()
    assert first.startswith(prompt)
    prompt_tokens = len(processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0
    assert len(processor.tokenizer(first, add_special_tokens=False)["input_ids"]) - prompt_tokens <= new_tokens


def test_chat_model_answers_and_ranks_through_its_chat_template(registry, checkpoints, monkeypatch):
    """Given a LLaVA-style image-text-to-text checkpoint with a chat template, when ask runs, then a free answer
    equals the library's greedy generate after the generation prompt, and choices are ranked by the
    log-likelihood of the assistant turn, equal to the library's own loss on it."""
    monkeypatch.setenv("VISTRACE_HF_VQA_MODEL", str(checkpoints / "llava"))
    image, question = picture(48, 36, seed=7), "what color is the car?"
    processor, model = library(checkpoints / "llava", "AutoModelForImageTextToText")
    user = [{"role": "user", "content": [{"type": "image", "image": image.pil}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    expected = processor.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert registry.get("ask")(registry, image=image, question=question) == expected

    options = ["red", "blue", "red car"]
    reference = {}
    for c in options:
        full = processor.apply_chat_template(user + [{"role": "assistant", "content": [{"type": "text", "text": c}]}],
                                             tokenize=True, return_dict=True, return_tensors="pt")
        labels = full["input_ids"].clone()
        labels[:, :prompt["input_ids"].shape[1]] = -100
        with torch.no_grad():
            loss = model(**full, labels=labels).loss
        reference[c] = -float(loss) * int((labels[:, 1:] != -100).sum())
    ranking = hf_vlm.HfVqaBackend().rank(image, question, options)
    for c, s in ranking:
        assert s == pytest.approx(reference[c], rel=1e-4, abs=1e-4)
    answer = registry.get("ask")(registry, image=image, question=question, choices=",".join(options))
    assert answer == ranking[0][0] == max(reference, key=reference.get)


def test_bfloat16_setting_loads_half_precision(checkpoints, monkeypatch):
    """Given dtype = bfloat16, when caption runs, then the model holds bfloat16 weights and gives a string."""
    monkeypatch.setenv("VISTRACE_HF_CAPTION_MODEL", str(checkpoints / "blip_caption"))
    monkeypatch.setenv("VISTRACE_HF_CAPTION_DTYPE", "bfloat16")
    b = hf_vlm.HfCaptionBackend()
    assert isinstance(b.run(image=picture(40, 40)), str)
    assert next(b.loaded().model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("tool, table, value, message", [
    ("ask", "HF_VQA", None, "VISTRACE_HF_VQA_MODEL"),
    ("caption", "HF_CAPTION", None, "VISTRACE_HF_CAPTION_MODEL"),
    ("ask", "HF_VQA", "/nonexistent/blip", "nothing is downloaded"),
    ("caption", "HF_CAPTION", "Salesforce/blip-not-in-cache", "neither a local folder nor in the Hugging Face cache"),
    ("ask", "HF_VQA", "<blip_caption>", "BLIP captioning model.*VISTRACE_HF_CAPTION_MODEL"),
    ("caption", "HF_CAPTION", "<blip_vqa>", "BLIP VQA model.*VISTRACE_HF_VQA_MODEL"),
    ("caption", "HF_CAPTION", "<llava>", "'llava' model.*VISTRACE_HF_VQA_MODEL"),
    ("ask", "HF_VQA", "<dpt>", "'dpt' model.*VISTRACE_DPT_MODEL"),
    ("ask", "HF_VQA", "<llava_no_template>", "has no chat template"),
])
def test_clear_errors_for_missing_or_wrong_checkpoints(registry, checkpoints, monkeypatch, tool, table, value,
                                                       message):
    """Given no model, a missing folder or id, or a checkpoint of another kind, when the tool runs, then
    BackendUnavailable says what is wrong and which setting fixes it."""
    if value is not None:
        if value.startswith("<"):
            value = str(checkpoints / value.strip("<>"))
        monkeypatch.setenv(f"VISTRACE_{table}_MODEL", value)
    args = {"question": "what is it?"} if tool == "ask" else {}
    with pytest.raises(BackendUnavailable, match=message):
        registry.get(tool)(registry, image=picture(32, 32), **args)


@pytest.mark.parametrize("key, value", [("MAX_NEW_TOKENS", "0"), ("MAX_NEW_TOKENS", "many"), ("DTYPE", "int8")])
def test_bad_settings_are_refused(registry, checkpoints, monkeypatch, key, value):
    """Given a bad max_new_tokens or dtype, when caption runs, then BackendUnavailable names the setting."""
    monkeypatch.setenv("VISTRACE_HF_CAPTION_MODEL", str(checkpoints / "blip_caption"))
    monkeypatch.setenv(f"VISTRACE_HF_CAPTION_{key}", value)
    with pytest.raises(BackendUnavailable, match=f"setting '{key.lower()}'"):
        registry.get("caption")(registry, image=picture(32, 32))


def test_importing_the_module_is_light():
    """Given a fresh interpreter, when hf_vlm is imported, then transformers and torch are not."""
    import subprocess
    import sys

    code = ("import sys; import vistrace.tools.adapters.hf_vlm; "
            "print('transformers' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
