"""``ask`` and ``caption`` by Hugging Face transformers checkpoints the user brings.

- ``hf_vqa`` (tool ``ask``): a BLIP VQA checkpoint (``BlipForQuestionAnswering`` + ``BlipProcessor``,
  e.g. Salesforce/blip-vqa-base), or a generic image-text-to-text model
  (``AutoModelForImageTextToText``, e.g. a LLaVA-style checkpoint) prompted through its processor's
  chat template. A free question is answered by greedy decoding. With ``choices``, each candidate is
  scored by the decoder's log-likelihood of producing exactly that answer, and the best one is
  returned: for BLIP the answer tokens then [SEP] after the [DEC] start token — the sum of token
  log-probabilities, as BLIP's own ``rank_answer`` scores candidates (Li et al. 2022, salesforce/BLIP
  models/blip_vqa.py), here over every candidate; for a chat model the tokens of the assistant turn
  (the answer and the template's end of turn) after the generation prompt.
- ``hf_caption`` (tool ``caption``): ``BlipForConditionalGeneration`` (e.g.
  Salesforce/blip-image-captioning-base), greedy, optionally continuing a text ``prompt`` such as
  "a picture of" (the caption then starts with it, as BLIP writes it).

Settings (``[backends.hf_vqa]`` / ``[backends.hf_caption]``, or ``VISTRACE_HF_VQA_MODEL`` etc.)::

    [backends.hf_caption]
    model = "Salesforce/blip-image-captioning-base"   # a local folder, or an id in your HF cache
    prompt = "a picture of"      # optional
    max_new_tokens = 30          # optional (hf_vqa: 20)
    device = "cuda:0"            # optional
    dtype = "float16"            # optional: float32 (default), float16, bfloat16

Nothing is downloaded (``local_files_only=True``); a checkpoint of the wrong kind is refused with the
backend that fits it.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any

from vistrace.errors import BackendUnavailable, ToolError
from vistrace.settings import env_name
from vistrace.values import Image

from ..backends import Backend
from .hf_depth import HfBackend, Loaded, rgb

log = logging.getLogger(__name__)

BLIP_VQA = "BlipForQuestionAnswering"
BLIP_CAPTION = "BlipForConditionalGeneration"
# architecture-name endings of generative image-text-to-text models (a CLIP or SigLIP dual encoder is not one)
GENERATIVE = ("ForConditionalGeneration", "ForCausalLM", "ForVisionText2Text", "ForImageTextToText")
DEPTH_TABLES = {"dpt": "dpt", "zoedepth": "dpt", "depth_anything": "depth_anything"}  # model_type -> backend table


def weight_names(path: Path) -> set[str] | None:
    """The tensor names of a safetensors checkpoint (its JSON header or index only), None when unknown."""
    index = path / "model.safetensors.index.json"
    try:
        if index.is_file():
            return set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}))
        file = path / "model.safetensors"
        if file.is_file():
            with file.open("rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                return set(json.loads(f.read(size))) - {"__metadata__"}
    except (OSError, ValueError, struct.error):
        return None
    return None


def blip_head(config: dict[str, Any], path: Path) -> str | None:
    """'vqa' or 'caption' for a BLIP checkpoint: from ``architectures``, else from its weights (a VQA
    model has a question encoder, ``text_encoder.*``); None when neither says."""
    arch = config.get("architectures") or []
    if BLIP_VQA in arch:
        return "vqa"
    if BLIP_CAPTION in arch:
        return "caption"
    names = weight_names(path)
    if names is None:
        return None
    return "vqa" if any(n.startswith("text_encoder.") for n in names) else "caption"


def positive_int(backend: HfBackend, key: str, default: int) -> int:
    s = backend.settings()
    value = s.get(key)
    if value in (None, ""):
        return default
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise BackendUnavailable(f"{backend.name}: setting '{key}' = {value!r} (from {s.where(key)}) must be a "
                                 "positive whole number", fix=f"{env_name(backend.settings_name, key)}={default}")
    return n


class _GenerativeBackend(HfBackend):
    """Shared by hf_vqa and hf_caption: loading, inputs on the model's device/dtype, greedy decoding."""

    default_new_tokens = 20

    def check_settings(self) -> None:
        positive_int(self, "max_new_tokens", self.default_new_tokens)

    def max_new_tokens(self) -> int:
        return positive_int(self, "max_new_tokens", self.default_new_tokens)

    def greedy(self) -> dict[str, Any]:
        """Deterministic decoding whatever the checkpoint's generation_config says."""
        return {"max_new_tokens": self.max_new_tokens(), "do_sample": False, "num_beams": 1}

    def to_model(self, m: Loaded, inputs: Any) -> dict[str, Any]:
        import torch

        dev = self.model_device(m)
        out = {}
        for k, v in dict(inputs).items():
            if isinstance(v, torch.Tensor):
                v = v.to(dev, m.dtype) if torch.is_floating_point(v) else v.to(dev)
            out[k] = v
        return out

    def load_pretrained(self, model_class: Any, path: Path, device: str, kind: str) -> Loaded:
        from transformers import AutoProcessor

        config = self.checkpoint_config(path)
        dtype = self.torch_dtype()
        try:
            processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
            model = model_class.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        except (OSError, ValueError, KeyError) as exc:
            raise BackendUnavailable(f"{self.name}: cannot load the checkpoint at {path} as "
                                     f"{model_class.__name__}: {exc}",
                                     fix=f"check the folder (config.json, weights, processor and tokenizer files), "
                                         f"or {self.setting_hint()}") from exc
        return Loaded(self.place(model, device), processor, config, dtype, kind)


class HfVqaBackend(_GenerativeBackend):
    """``ask``: BLIP VQA, or an image-text-to-text model through its chat template; choices ranked by likelihood."""

    tool = "ask"
    name = "hf_vqa"
    settings_name = "hf_vqa"
    family = "BLIP VQA / image-text-to-text"
    weights_example = "Salesforce/blip-vqa-base"

    def accept(self, config: dict[str, Any], path: Path) -> None:
        kind = config.get("model_type")
        if kind == "blip":
            head = blip_head(config, path)
            if head == "caption":
                raise self.wrong_kind(path, f"a BLIP captioning model ({BLIP_CAPTION})", "hf_caption")
            if head is None:
                raise self.wrong_kind(path, "a BLIP model whose head is unknown (no architectures in config.json, "
                                            "no safetensors weights)", None)
            return
        arch = config.get("architectures") or []
        multimodal = "vision_config" in config and "text_config" in config
        if not multimodal or (arch and not any(a.endswith(GENERATIVE) for a in arch)):
            what = f"a '{kind}' model ({', '.join(arch) or 'config.json model_type'})"
            hint = DEPTH_TABLES.get(str(kind))
            raise self.wrong_kind(path, what + ", not a BLIP VQA or image-text-to-text model", hint)

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        config = self.checkpoint_config()
        what = "BLIP VQA" if config.get("model_type") == "blip" else f"'{config.get('model_type')}' chat model"
        choices = args.get("choices") or []
        if isinstance(choices, str):  # the tool's own argument is comma-separated
            choices = [c for c in (x.strip() for x in choices.split(",")) if c]
        how = (f"ranks the {len(choices)} choices by the decoder's answer log-likelihood" if choices
               else f"answers by greedy decoding (up to {self.max_new_tokens()} tokens)")
        return True, f"{self.name}: {what}; {how}"

    def load(self, path: Path, device: str) -> Loaded:
        config = self.checkpoint_config(path)
        if config.get("model_type") == "blip":
            from transformers import BlipForQuestionAnswering

            return self.load_pretrained(BlipForQuestionAnswering, path, device, "blip")
        from transformers import AutoModelForImageTextToText

        m = self.load_pretrained(AutoModelForImageTextToText, path, device, "chat")
        if not getattr(m.processor, "chat_template", None):
            raise BackendUnavailable(f"{self.name}: the image-text-to-text checkpoint at {path} has no chat template "
                                     "(chat_template.jinja or in processor_config.json), so a question cannot be posed",
                                     fix=f"use a chat checkpoint, or a BLIP VQA one; {self.setting_hint()}")
        return m

    # the tool ----------------------------------------------------------------------------
    def run(self, image: Image, question: str, choices: list[str] | None = None, **_: Any) -> str:
        return self.run_batch([image], question=question, choices=choices)[0]

    def run_batch(self, images: list[Image], question: str, choices: list[str] | None = None, **_: Any) -> list[str]:
        """One answer per image to the same question (BLIP: one batched pass; chat models: one image at a time)."""
        if not images:
            return []
        if choices:
            answers = []
            for ranking in self.rank_batch(images, question, list(choices)):
                best = ranking[0]
                log.info("%s: choice %r won (log-likelihood %.4g) over %s", self.name, best[0], best[1],
                         ", ".join(f"{c!r} {s:.4g}" for c, s in ranking[1:]))
                answers.append(best[0])
            return answers
        m = self.loaded()
        if m.kind == "blip":
            return self._blip_generate(m, images, question)
        return [self._chat_generate(m, im, question) for im in images]

    def rank(self, image: Image, question: str, choices: list[str]) -> list[tuple[str, float]]:
        """The choices with their answer log-likelihoods (natural log), best first (ties keep the given order)."""
        return self.rank_batch([image], question, choices)[0]

    def rank_batch(self, images: list[Image], question: str, choices: list[str]) -> list[list[tuple[str, float]]]:
        if not choices:
            raise ToolError(f"{self.name}: ranking needs at least one choice")
        m = self.loaded()
        if m.kind == "blip":
            scores = self._blip_scores(m, images, question, choices)
        else:
            scores = [self._chat_scores(m, im, question, choices) for im in images]
        return [sorted(zip(choices, row), key=lambda cs: -cs[1]) for row in scores]

    # BLIP ----------------------------------------------------------------------------------
    def _blip_inputs(self, m: Loaded, images: list[Image], question: str) -> dict[str, Any]:
        enc = m.processor(images=[rgb(im) for im in images], text=[question] * len(images), return_tensors="pt",
                          padding=True)
        return self.to_model(m, enc)

    def _blip_generate(self, m: Loaded, images: list[Image], question: str) -> list[str]:
        import torch

        inputs = self._blip_inputs(m, images, question)
        with torch.inference_mode():
            out = m.model.generate(**inputs, **self.greedy())
        # the decoder starts from the [DEC] token (text_config.bos_token_id): drop it, then the specials
        return [t.strip() for t in m.processor.batch_decode(out[:, 1:], skip_special_tokens=True)]

    def _blip_scores(self, m: Loaded, images: list[Image], question: str, choices: list[str]) -> list[list[float]]:
        """log p(answer tokens, [SEP] | [DEC], question, image) for every (image, choice), in one pass."""
        import torch

        tc = m.model.config.text_config
        tok = m.processor.tokenizer
        seqs = [[tc.bos_token_id, *tok(c, add_special_tokens=False)["input_ids"], tc.sep_token_id] for c in choices]
        length = max(len(s) for s in seqs)
        dev = self.model_device(m)
        ids = torch.full((len(seqs), length), tc.pad_token_id, dtype=torch.long, device=dev)
        mask = torch.zeros((len(seqs), length), dtype=torch.long, device=dev)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s, device=dev)
            mask[i, :len(s)] = 1
        inputs = self._blip_inputs(m, images, question)
        n, k = len(images), len(choices)
        with torch.inference_mode():
            vision = m.model.vision_model(pixel_values=inputs["pixel_values"])[0]
            vision_mask = torch.ones(vision.shape[:-1], dtype=torch.long, device=dev)
            q = m.model.text_encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                     encoder_hidden_states=vision, encoder_attention_mask=vision_mask)[0]
            logits = m.model.text_decoder(
                input_ids=ids.repeat(n, 1), attention_mask=mask.repeat(n, 1),
                encoder_hidden_states=q.repeat_interleave(k, 0),
                encoder_attention_mask=inputs["attention_mask"].repeat_interleave(k, 0)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        target = ids.repeat(n, 1)[:, 1:]
        token = logp.gather(-1, target[..., None])[..., 0] * mask.repeat(n, 1)[:, 1:]
        return token.sum(1).view(n, k).cpu().tolist()

    # chat models ---------------------------------------------------------------------------
    @staticmethod
    def _conversation(image: Image, question: str, answer: str | None = None) -> list[dict[str, Any]]:
        conv = [{"role": "user", "content": [{"type": "image", "image": rgb(image)},
                                             {"type": "text", "text": question}]}]
        if answer is not None:
            conv.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return conv

    def _chat_inputs(self, m: Loaded, conv: list[dict[str, Any]], prompt: bool) -> Any:
        return m.processor.apply_chat_template(conv, add_generation_prompt=prompt, tokenize=True, return_dict=True,
                                               return_tensors="pt")

    def _chat_generate(self, m: Loaded, image: Image, question: str) -> str:
        import torch

        inputs = self._chat_inputs(m, self._conversation(image, question), prompt=True)
        start = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            out = m.model.generate(**self.to_model(m, inputs), **self.greedy())
        return m.processor.batch_decode(out[:, start:], skip_special_tokens=True)[0].strip()

    def _chat_scores(self, m: Loaded, image: Image, question: str, choices: list[str]) -> list[float]:
        """log p(assistant turn | generation prompt) per choice: the tokens the full conversation adds to the
        prompt (the answer and the template's end of turn), one forward pass per choice."""
        import torch

        prompt = self._chat_inputs(m, self._conversation(image, question), prompt=True)["input_ids"][0]
        scores = []
        for choice in choices:
            full = self._chat_inputs(m, self._conversation(image, question, choice), prompt=False)
            ids = full["input_ids"][0]
            p = len(prompt)
            if len(ids) <= p or not torch.equal(ids[:p], prompt):
                raise ToolError(f"{self.name}: the chat template's generation prompt is not a prefix of the "
                                f"answered conversation for choice {choice!r}, so its likelihood cannot be read off; "
                                "ask without choices, or use a BLIP VQA checkpoint")
            with torch.inference_mode():
                logits = m.model(**self.to_model(m, full)).logits[0]
            logp = torch.log_softmax(logits[p - 1:-1].float(), dim=-1)
            scores.append(float(logp.gather(-1, ids[p:, None].to(logp.device)).sum()))
        return scores


class HfCaptionBackend(_GenerativeBackend):
    """``caption``: BLIP captioning, greedy, optionally continuing the ``prompt`` setting."""

    tool = "caption"
    name = "hf_caption"
    settings_name = "hf_caption"
    family = "BLIP captioning"
    weights_example = "Salesforce/blip-image-captioning-base"
    default_new_tokens = 30

    def accept(self, config: dict[str, Any], path: Path) -> None:
        kind = config.get("model_type")
        if kind != "blip":
            hint = DEPTH_TABLES.get(str(kind), "hf_vqa" if "vision_config" in config else None)
            raise self.wrong_kind(path, f"a '{kind}' model (config.json model_type)", hint)
        head = blip_head(config, path)
        if head != "caption":
            what = (f"a BLIP VQA model ({BLIP_VQA})" if head == "vqa" else
                    "a BLIP model whose head is unknown (no architectures in config.json, no safetensors weights)")
            raise self.wrong_kind(path, what, "hf_vqa" if head == "vqa" else None)

    def prompt(self) -> str:
        return str(self.settings().get("prompt") or "").strip()

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        prompt = self.prompt()
        return True, (f"{self.name}: BLIP captioning, greedy (up to {self.max_new_tokens()} tokens)"
                      + (f", continuing the prompt {prompt!r}" if prompt else ""))

    def load(self, path: Path, device: str) -> Loaded:
        from transformers import BlipForConditionalGeneration

        return self.load_pretrained(BlipForConditionalGeneration, path, device, "blip")

    def run(self, image: Image, **_: Any) -> str:
        return self.run_batch([image])[0]

    def run_batch(self, images: list[Image], **_: Any) -> list[str]:
        """One caption per image, in one batched generate call."""
        import torch

        if not images:
            return []
        m = self.loaded()
        prompt = self.prompt()
        pils = [rgb(im) for im in images]
        enc = m.processor(images=pils, text=[prompt] * len(pils), return_tensors="pt", padding=True) if prompt \
            else m.processor(images=pils, return_tensors="pt")
        with torch.inference_mode():
            out = m.model.generate(**self.to_model(m, enc), **self.greedy())
        # the first token is BLIP's [DEC] start token (text_config.bos_token_id); the prompt's words follow it
        return [t.strip() for t in m.processor.batch_decode(out[:, 1:], skip_special_tokens=True)]


def backends() -> list[Backend]:
    return [HfVqaBackend(), HfCaptionBackend()]
