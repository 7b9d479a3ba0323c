"""Given OWLv2 / OWL-ViT / Grounding DINO models a user brought (here: the real architectures with tiny
random weights, saved with ``save_pretrained`` like a real checkpoint), when ``detect`` runs through them,
then boxes come back in root-image pixels labelled with the query labels, the OWLv2 square padding is
undone, batches equal single runs, thresholds filter, and missing or wrong weights are clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import vistrace  # noqa: E402
from vistrace.errors import BackendUnavailable, ToolArgumentError  # noqa: E402
from vistrace.tools.adapters import hf_detect  # noqa: E402
from vistrace.values import Box, Image  # noqa: E402

from .tiny_tokenizers import CLIP_VOCAB_SIZE, bert_tokenizer, bert_vocab_size, clip_tokenizer  # noqa: E402
from .conftest import picture, registry_with


@pytest.fixture
def registry():
    return registry_with(*hf_detect.backends())



pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

LABELS = ["cat", "red car"]


# fixtures: tiny random models saved as users have them ----------------------------------------------
def _owl_folder(root, v1: bool):
    from transformers import (OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor,
                              Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor)

    tok = clip_tokenizer(root / "tokenizer")
    tok.model_max_length = 32
    text = dict(vocab_size=CLIP_VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=32, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=64, patch_size=16)
    torch.manual_seed(1 if v1 else 0)
    if v1:
        model = OwlViTForObjectDetection(OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32))
        proc = OwlViTProcessor(image_processor=OwlViTImageProcessor(size={"height": 64, "width": 64},
                                                                    crop_size={"height": 64, "width": 64}),
                               tokenizer=tok)
    else:
        model = Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=32))
        proc = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tok)
    with torch.no_grad():
        model.box_head.dense2.weight.mul_(0.01)  # random init saturates the box sigmoid: keep boxes near their patch
        model.class_head.logit_scale.weight.mul_(0.01)  # a random logit scale near 0 ties every query at 0.5:
        model.class_head.logit_scale.bias.zero_()        # keep it near elu(0) + 1 = 1
    folder = root / "model"
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def owl_folder(tmp_path_factory):
    return _owl_folder(tmp_path_factory.mktemp("owlv2"), v1=False)


@pytest.fixture(scope="module")
def owlvit_folder(tmp_path_factory):
    return _owl_folder(tmp_path_factory.mktemp("owlvit"), v1=True)


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory):
    from transformers import (GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoImageProcessor,
                              GroundingDinoProcessor, SwinConfig)

    root = tmp_path_factory.mktemp("gdino")
    tok = bert_tokenizer(root / "tokenizer")
    swin = SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, image_size=64,
                      out_features=["stage2", "stage3", "stage4"])
    text = dict(model_type="bert", vocab_size=bert_vocab_size(root / "tokenizer"), hidden_size=32,
                num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    config = GroundingDinoConfig(backbone_config=swin, text_config=text, d_model=32, encoder_layers=1,
                                 decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
                                 decoder_attention_heads=2, num_queries=12, encoder_n_points=2, decoder_n_points=2,
                                 max_text_len=32)
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(config)
    proc = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(
        size={"shortest_edge": 64, "longest_edge": 96}), tokenizer=tok)
    folder = root / "model"
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


def xyxy_of(dets) -> np.ndarray:
    return np.array([b.xyxy for b in dets], dtype=float).reshape(-1, 4)


def same(a, b, px: float = 1e-3, score: float = 1e-4) -> None:
    """Two detection lists hold the same boxes, labels and scores, in any order."""
    rest = list(b)
    assert len(a) == len(rest)
    for x in a:
        match = next((y for y in rest if y.label == x.label and abs(y.score - x.score) <= score
                      and np.allclose(x.xyxy, y.xyxy, atol=px)), None)
        assert match is not None, f"{x} has no counterpart"
        rest.remove(match)


# OWLv2 --------------------------------------------------------------------------------------------------
def owl_reference(folder, image: Image, queries: list[str], square: bool, threshold: float = 1e-6):
    """Boxes and scores computed independently from the raw model outputs (no post-processor)."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    proc = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(folder, local_files_only=True).eval()
    inputs = proc(text=[queries], images=[image.pil], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    w, h = image.size
    sx, sy = (max(w, h), max(w, h)) if square else (w, h)
    cx, cy, bw, bh = out.pred_boxes[0].double().unbind(-1)
    boxes = torch.stack([(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy], -1)
    boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([w, h, w, h], dtype=torch.float64))
    best, idx = out.logits[0].max(-1)
    scores = best.sigmoid()
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & (scores >= threshold)
    return boxes[keep].numpy(), scores[keep].numpy(), idx[keep].numpy()


def test_owlv2_detects_query_labels_in_image_pixels(registry, owl_folder, monkeypatch):
    """Given a configured OWLv2 folder, when detect runs on a full image, then every box is inside it,
    labelled with a query label, scored 0..1, best first, and the trace names owlv2."""
    monkeypatch.setenv("VISTRACE_OWLV2_MODEL", str(owl_folder))
    image = picture(90, 40)
    run = vistrace.run("d = detect(image, 'cat, red car', 0.01)\nresult = d", registry=registry, cache=False,
                       image=image)
    assert run.ok, run.error
    dets = run.value
    assert len(dets) > 0 and {b.label for b in dets} <= set(LABELS)
    assert all(0.01 <= b.score <= 1 for b in dets) and list(dets.scores) == sorted(dets.scores, reverse=True)
    arr = xyxy_of(dets)
    assert (arr[:, [0, 2]] >= 0).all() and (arr[:, [0, 2]] <= 90).all() and (arr[:, [1, 3]] <= 40).all()
    step = run.trace.steps[0]
    assert step.backend == "owlv2" and "below a configured YOLO" in step.reason


@pytest.mark.parametrize("size", [(96, 40), (40, 90), (64, 64)])
def test_owlv2_undoes_the_square_padding(owl_folder, monkeypatch, size):
    """Given non-square images (OWLv2 pads them to a square at the bottom/right), when detected, then the
    boxes equal an independent computation from the raw outputs scaled by max(h, w) and clipped."""
    monkeypatch.setenv("VISTRACE_OWLV2_MODEL", str(owl_folder))
    image = picture(*size, seed=3)
    dets = hf_detect.Owlv2Backend().run(image=image, labels=LABELS, threshold=1e-6)
    ref_boxes, ref_scores, ref_idx = owl_reference(owl_folder, image, [f"a photo of a {q}" for q in LABELS], True)
    order = np.lexsort((ref_boxes[:, 1], ref_boxes[:, 0], -ref_scores))
    got = sorted(dets, key=lambda b: (-b.score, b.x1, b.y1))
    assert len(got) == len(ref_scores)
    assert np.allclose(xyxy_of(got), ref_boxes[order], atol=1e-3)
    assert np.allclose([b.score for b in got], ref_scores[order], atol=1e-5)
    assert [b.label for b in got] == [LABELS[i] for i in ref_idx[order]]
    if size[0] != size[1]:  # scaling by (h, w), as for an unpadded image, would put the boxes elsewhere
        stretched, _, _ = owl_reference(owl_folder, image, [f"a photo of a {q}" for q in LABELS], False)
        assert stretched.shape != ref_boxes.shape or not np.allclose(stretched, ref_boxes, atol=1.0)


def test_owlvit_v1_checkpoint_maps_without_padding(owlvit_folder, monkeypatch):
    """Given an OWL-ViT v1 checkpoint (resized to a square, not padded), when detected, then the boxes
    are the raw outputs scaled by (w, h)."""
    monkeypatch.setenv("VISTRACE_OWLV2_MODEL", str(owlvit_folder))
    monkeypatch.setenv("VISTRACE_OWLV2_PROMPT", "{label}")
    image = picture(80, 48, seed=5)
    dets = hf_detect.Owlv2Backend().run(image=image, labels=LABELS, threshold=1e-6)
    ref_boxes, ref_scores, _ = owl_reference(owlvit_folder, image, LABELS, False)
    assert len(dets) == len(ref_scores)
    assert np.allclose(np.sort(xyxy_of(dets), axis=0), np.sort(ref_boxes, axis=0), atol=1e-3)


def test_owlv2_crop_boxes_map_back_to_the_root(registry, owl_folder, monkeypatch):
    """Given a crop of an image, when detect runs on it, then its boxes are the crop's own boxes shifted
    by the crop's offset (root pixels)."""
    monkeypatch.setenv("VISTRACE_OWLV2_MODEL", str(owl_folder))
    image = picture(120, 80, seed=7)
    crop = image.crop(Box(30, 10, 100, 60))
    in_root = registry.get("detect")(registry, image=crop, query="cat,red car", threshold=0.01)
    alone = hf_detect.Owlv2Backend().run(image=Image(crop.pil), labels=LABELS, threshold=0.01)
    assert len(in_root) == len(alone) > 0
    shifted = [b.replace(x1=b.x1 + 30, y1=b.y1 + 10, x2=b.x2 + 30, y2=b.y2 + 10) for b in alone]
    same(in_root, shifted)
    arr = xyxy_of(in_root)
    assert (arr[:, [0, 2]] >= 30).all() and (arr[:, [0, 2]] <= 100).all() and (arr[:, [1, 3]] >= 10).all()


def test_owlv2_batch_equals_single_runs(owl_folder, monkeypatch):
    """Given two images of different sizes, when run as one batch, then each result equals its single run."""
    monkeypatch.setenv("VISTRACE_OWLV2_MODEL", str(owl_folder))
    backend = hf_detect.Owlv2Backend()
    images = [picture(90, 40, seed=1), picture(50, 70, seed=2)]
    batch = backend.run_batch(images, labels=LABELS, threshold=0.01)
    for im, dets in zip(images, batch):
        same(dets, backend.run(image=im, labels=LABELS, threshold=0.01))
        assert dets.image_size == im.size


def test_owlv2_threshold_and_default_floor(owl_folder, monkeypatch):
    """Given scores spread over 0..1, when a threshold is given, then exactly the boxes at or above it
    stay; with threshold 0 the score_threshold setting is the floor."""
    monkeypatch.setenv("VISTRACE_OWLV2_MODEL", str(owl_folder))
    backend = hf_detect.Owlv2Backend()
    image = picture(64, 64, seed=4)
    everything = backend.run(image=image, labels=LABELS, threshold=1e-6)
    cut = float(np.median([b.score for b in everything]))
    kept = backend.run(image=image, labels=LABELS, threshold=cut)
    assert 0 < len(kept) < len(everything)
    assert len(kept) == sum(b.score >= cut for b in everything) and min(kept.scores) >= cut
    monkeypatch.setenv("VISTRACE_OWLV2_SCORE_THRESHOLD", str(cut))
    assert len(backend.run(image=image, labels=LABELS, threshold=0.0)) == len(kept)
    assert f"score_threshold={cut}" in backend.version  # the cache key changes with the setting


def test_owlv2_float16_and_dtype_setting(owl_folder, monkeypatch):
    """Given dtype = float16, when loaded, then the model runs in half precision with results close to
    float32; 'auto' on CPU is float32."""
    monkeypatch.setenv("VISTRACE_OWLV2_MODEL", str(owl_folder))
    backend = hf_detect.Owlv2Backend()
    image = picture(70, 50, seed=6)
    full = backend.run(image=image, labels=LABELS, threshold=1e-6)  # every patch's box, in patch order
    monkeypatch.setenv("VISTRACE_OWLV2_DTYPE", "auto")
    assert backend.loaded().model.dtype == torch.float32
    monkeypatch.setenv("VISTRACE_OWLV2_DTYPE", "float16")
    assert backend.loaded().model.dtype == torch.float16
    half = backend.run(image=image, labels=LABELS, threshold=1e-6)
    assert len(half) == len(full)
    assert np.allclose(xyxy_of(half), xyxy_of(full), atol=0.5)
    assert np.allclose(half.scores, full.scores, atol=0.02)


def test_owlv2_from_the_hugging_face_cache(registry, owl_folder, dino_folder, monkeypatch, tmp_path):
    """Given model ids whose snapshots sit in $HF_HUB_CACHE (models--org--name/snapshots/REV + refs/main),
    when detect runs with the ids configured, then the cached folders are used, nothing downloaded."""
    cache = tmp_path / "hub"
    for repo, folder in (("models--tiny--owlv2", owl_folder), ("models--tiny--gdino", dino_folder)):
        shutil.copytree(folder, cache / repo / "snapshots" / "abc123")
        (cache / repo / "refs").mkdir(parents=True)
        (cache / repo / "refs" / "main").write_text("abc123")
    image = picture(72, 48, seed=8)
    monkeypatch.setenv("VISTRACE_OWLV2_MODEL", "tiny/owlv2")
    backend = hf_detect.Owlv2Backend()
    assert backend.availability().ok and backend.resolve_weights() == cache / "models--tiny--owlv2" / "snapshots" / "abc123"
    from_cache = registry.get("detect")(registry, image=image, query="cat,red car", threshold=0.01)
    monkeypatch.setenv("VISTRACE_OWLV2_MODEL", str(owl_folder))
    same(from_cache, registry.get("detect")(registry, image=image, query="cat,red car", threshold=0.01))
    monkeypatch.setenv("VISTRACE_GROUNDING_DINO_MODEL", "tiny/gdino")
    assert hf_detect.GroundingDinoBackend().availability().ok


@pytest.mark.parametrize("setting, message", [
    (None, "VISTRACE_OWLV2_MODEL"),
    ("/nowhere/owlv2-folder", "neither a local folder nor in the Hugging Face cache"),
    ("google/owlv2-not-cached", "nothing is downloaded"),
])
def test_owlv2_missing_model_is_a_clear_error(registry, monkeypatch, setting, message):
    """Given no model, a missing folder or an uncached id, when detect runs, then BackendUnavailable names
    the setting and its environment variable."""
    if setting:
        monkeypatch.setenv("VISTRACE_OWLV2_MODEL", setting)
    avail = hf_detect.Owlv2Backend().availability()
    assert not avail.ok and message in avail.reason + (avail.fix or "")
    assert "VISTRACE_OWLV2_MODEL" in (avail.fix or "")
    with pytest.raises(BackendUnavailable, match="owlv2"):
        registry.get("detect")(registry, image=picture(32, 32), query="cat")


@pytest.mark.parametrize("env, value, message", [
    ("VISTRACE_OWLV2_DTYPE", "float8", "dtype"),
    ("VISTRACE_OWLV2_SCORE_THRESHOLD", "lots", "score_threshold"),
    ("VISTRACE_OWLV2_PROMPT", "a photo of a thing", "{label}"),
])
def test_owlv2_bad_settings_are_named(owl_folder, monkeypatch, env, value, message):
    """Given a bad setting, when detect runs, then the error names that setting and its variable."""
    monkeypatch.setenv("VISTRACE_OWLV2_MODEL", str(owl_folder))
    monkeypatch.setenv(env, value)
    with pytest.raises(BackendUnavailable, match=message.replace("{", r"\{").replace("}", r"\}")) as err:
        hf_detect.Owlv2Backend().run(image=picture(32, 32), labels=["cat"])
    assert env in err.value.fix and "[backends.owlv2]" in err.value.fix


def test_wrong_model_family_is_refused(dino_folder, tmp_path, monkeypatch):
    """Given a Grounding DINO folder set as the OWLv2 model, or a folder with no model, when loaded, then
    the error says what the folder holds."""
    monkeypatch.setenv("VISTRACE_OWLV2_MODEL", str(dino_folder))
    with pytest.raises(BackendUnavailable, match="'grounding-dino' model"):
        hf_detect.Owlv2Backend().run(image=picture(32, 32), labels=["cat"])
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("VISTRACE_GROUNDING_DINO_MODEL", str(tmp_path / "empty"))
    with pytest.raises(BackendUnavailable, match="no loadable transformers model config"):
        hf_detect.GroundingDinoBackend().run(image=picture(32, 32), labels=["cat"])


# Grounding DINO -------------------------------------------------------------------------------------------
def dino_reference(folder, image: Image, prompt: str, spans: dict[str, list[int]], box_thr: float, text_thr: float):
    """IDEA's rule from the raw outputs: score = max token prob, label = the span with the strongest token."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    proc = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(folder, local_files_only=True).eval()
    inputs = proc(text=[prompt], images=[image.pil], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    w, h = image.size
    probs = out.logits[0].sigmoid()
    found = []
    for p, (cx, cy, bw, bh) in zip(probs, out.pred_boxes[0].tolist()):
        label_p = {q: max(p[i].item() for i in pos) for q, pos in spans.items()}
        label = max(label_p, key=label_p.get)
        if p.max() >= box_thr and label_p[label] > text_thr:
            x1, y1 = max((cx - bw / 2) * w, 0), max((cy - bh / 2) * h, 0)
            x2, y2 = min((cx + bw / 2) * w, w), min((cy + bh / 2) * h, h)
            if x2 > x1 and y2 > y1:
                found.append(Box(x1, y1, x2, y2, label=label, score=p.max().item()))
    return found


def test_grounding_dino_matches_the_reference_rule(dino_folder, monkeypatch):
    """Given labels 'Cat' and 'red car', when detected, then the prompt is 'cat. red car.' and the boxes,
    scores and labels equal IDEA's rule computed from the raw outputs (tokens: [CLS] cat . red car . [SEP])."""
    monkeypatch.setenv("VISTRACE_GROUNDING_DINO_MODEL", str(dino_folder))
    backend = hf_detect.GroundingDinoBackend()
    tok = backend.loaded().processor.tokenizer
    prompt, ids, positions = backend.prompt(["Cat", "red car"], tok)
    assert prompt == "cat. red car." and positions == [[1], [3, 4]] and len(ids) == 7
    image = picture(90, 40, seed=2)
    dets = backend.run(image=image, labels=["Cat", "red car"], threshold=0.05)
    ref = dino_reference(dino_folder, image, prompt, {"Cat": [1], "red car": [3, 4]}, 0.05, 0.05)
    assert len(dets) > 0 and {b.label for b in dets} <= {"Cat", "red car"}
    same(dets, ref)


@pytest.mark.parametrize("probs, expected", [
    ([0, 0.9, 0.1, 0.2, 0.3, 0.1, 0], "cat"),          # the phrase is exactly 'cat'
    ([0, 0.1, 0.1, 0.2, 0.8, 0.1, 0], "red car"),      # a sub-span ('car') of 'red car'
    ([0, 0.6, 0.1, 0.7, 0.1, 0.1, 0], "red car"),      # spans both labels: the strongest token decides
    ([0.9, 0.1, 0.9, 0.1, 0.1, 0.9, 0.9], None),       # only [CLS], periods and [SEP]: no label
    ([0, 0.2, 0.1, 0.1, 0.2, 0.1, 0], None),           # nothing above the text threshold
])
def test_grounding_dino_phrase_maps_to_its_query_label(probs, expected):
    """Given token probabilities of one box over '[CLS] cat . red car . [SEP]', when mapped, then the box
    gets the query label its phrase belongs to, or none."""
    assert hf_detect.GroundingDinoBackend.label_of(probs, [[1], [3, 4]], ["cat", "red car"], 0.25) == expected


def test_grounding_dino_crop_batch_and_threshold(registry, dino_folder, monkeypatch):
    """Given a crop, a batch of same- and different-size images and thresholds, when detected, then crop
    boxes map back, every batch result equals its single run, and thresholds filter."""
    monkeypatch.setenv("VISTRACE_GROUNDING_DINO_MODEL", str(dino_folder))
    backend = hf_detect.GroundingDinoBackend()
    image = picture(120, 80, seed=9)
    crop = image.crop(Box(20, 16, 110, 70))
    in_root = registry.get("detect")(registry, image=crop, query="cat,red car", threshold=0.05)
    alone = backend.run(image=Image(crop.pil), labels=LABELS, threshold=0.05)
    same(in_root, [b.replace(x1=b.x1 + 20, y1=b.y1 + 16, x2=b.x2 + 20, y2=b.y2 + 16) for b in alone])

    images = [picture(90, 40, seed=1), picture(90, 40, seed=2), picture(50, 70, seed=3)]
    batch = backend.run_batch(images, labels=LABELS, threshold=0.05)
    for im, dets in zip(images, batch):
        same(dets, backend.run(image=im, labels=LABELS, threshold=0.05))

    everything = backend.run(image=images[0], labels=LABELS, threshold=0.01)
    cut = float(np.median([b.score for b in everything]))
    kept = backend.run(image=images[0], labels=LABELS, threshold=cut)
    assert min(kept.scores) >= cut and len(kept) <= sum(b.score >= cut for b in everything)
    monkeypatch.setenv("VISTRACE_GROUNDING_DINO_BOX_THRESHOLD", "0.99999")
    monkeypatch.setenv("VISTRACE_GROUNDING_DINO_TEXT_THRESHOLD", "0.99999")
    assert all(b.score >= 0.99999 for b in backend.run(image=images[0], labels=LABELS))


def test_grounding_dino_refuses_a_prompt_longer_than_the_model_reads(dino_folder, monkeypatch):
    """Given more labels than fit the model's text length (32 tokens here), when detected, then a
    ToolArgumentError says so instead of silently dropping the labels at the end."""
    monkeypatch.setenv("VISTRACE_GROUNDING_DINO_MODEL", str(dino_folder))
    labels = [f"dog {c}" for c in "abcdefghijklmnop"]
    with pytest.raises(ToolArgumentError, match="over the model's 32"):
        hf_detect.GroundingDinoBackend().run(image=picture(40, 40), labels=labels)


def test_priorities_rank_below_yolo():
    """Given both backends, then Grounding DINO (26) ranks above OWLv2 (25), both below YOLO's 30."""
    gd, owl = hf_detect.backends()
    assert 30 > gd.priority > owl.priority and gd.tool == owl.tool == "detect"
    assert gd.weights_kind == owl.weights_kind == "hf" and gd.extra == "hf"


@pytest.mark.parametrize("crop, refused", [(32, True), (64, False)])
def test_owl_processor_that_centre_crops_is_refused(crop, refused):
    """Given an OWL-ViT processor that centre-crops to a smaller square, when checked, then it is refused
    (boxes outside the crop can't be found); a crop equal to the resize size is a no-op and accepted."""
    from transformers import OwlViTImageProcessor

    class Processor:
        image_processor = OwlViTImageProcessor(do_center_crop=True, size={"height": 64, "width": 64},
                                               crop_size={"height": crop, "width": crop})

    if refused:
        with pytest.raises(BackendUnavailable, match="centre-crops"):
            hf_detect.Owlv2Backend().check_processor(Processor())
    else:
        hf_detect.Owlv2Backend().check_processor(Processor())
