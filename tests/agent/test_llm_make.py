"""Given LLM spec strings (argument, $VISTRACE_LLM or nothing), when make_llm reads them, then the right
client is built, and a spec that fits no form is an InputError that lists the forms. Given a local model
that cannot run here, when it is used, then LLMUnavailable names the file or package and the fix."""

from __future__ import annotations

import sys

import pytest
from vistrace.agent.llm import (
    SPEC_FORMS,
    LocalLlama,
    Message,
    OpenAICompatible,
    make_llm,
)
from vistrace.agent.llm.base import LLM, LLMUnavailable

from vistrace.errors import InputError

HELLO = [Message("user", "hi")]


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("VISTRACE_LLM", raising=False)


def test_no_spec_and_no_env_is_the_local_default_model(no_env):
    """Given no spec and no $VISTRACE_LLM, when make_llm() is called, then it is the local 0.5B Qwen GGUF."""
    llm = make_llm()
    assert isinstance(llm, LocalLlama) and isinstance(llm, LLM)
    assert llm.name == "local:qwen-0.5b" and llm.model_path.name == "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert llm.supports_grammar and llm.supports_json_schema and not llm.supports_images


def test_the_environment_variable_is_used_when_no_spec_is_given(monkeypatch):
    """Given $VISTRACE_LLM naming a server, when make_llm() is called without a spec, then that server is used;
    an explicit spec wins over the variable."""
    monkeypatch.setenv("VISTRACE_LLM", "openai:http://127.0.0.1:9/v1#env-model")
    llm = make_llm()
    assert isinstance(llm, OpenAICompatible) and llm.model == "env-model"
    assert isinstance(make_llm("local"), LocalLlama)


@pytest.mark.parametrize("spec, filename", [
    ("local", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    ("local:qwen-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    ("LOCAL:qwen-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
])
def test_local_names_pick_registered_model_files(no_env, spec, filename):
    """Given a local spec naming a registered model, when parsed, then the LocalLlama points at its file."""
    llm = make_llm(spec)
    assert isinstance(llm, LocalLlama) and llm.model_path.name == filename and llm.model_file


def test_local_path_is_any_gguf_file(no_env, tmp_path):
    """Given local:/path/x.gguf, when parsed, then the LocalLlama uses that path and the options given."""
    path = tmp_path / "my model.gguf"
    llm = make_llm(f"local:{path}", n_ctx=1024, n_threads=2)
    assert isinstance(llm, LocalLlama) and llm.model_path == path and llm.model_file is None
    assert (llm.n_ctx, llm.n_threads) == (1024, 2) and llm.name == f"local:{path}"


def test_openai_spec_splits_url_and_model_at_the_last_hash(no_env):
    """Given openai:URL#MODEL, when parsed, then base URL and model are split and options go to the client."""
    llm = make_llm("openai:http://127.0.0.1:8080/v1#qwen2.5-coder:0.5b", timeout=5, vision=True)
    assert isinstance(llm, OpenAICompatible)
    assert (llm.base_url, llm.model, llm.timeout, llm.supports_images) == \
        ("http://127.0.0.1:8080/v1", "qwen2.5-coder:0.5b", 5.0, True)
    assert llm.name == "openai:http://127.0.0.1:8080/v1#qwen2.5-coder:0.5b"


def test_an_llm_object_is_passed_through(no_env):
    """Given an LLM object instead of a string, when make_llm gets it, then it is returned as it is."""
    llm = make_llm("openai:http://127.0.0.1:8080/v1#m")
    assert make_llm(llm) is llm


@pytest.mark.parametrize("spec", [
    "", "   ", "gpt-4o", "ollama:llama3", "local:", "local:qwen-7b", "local:/models/model.bin", "local:~/x.safetensors",
    "openai:", "openai:http://127.0.0.1:8080/v1", "openai:http://127.0.0.1:8080/v1#", "openai:127.0.0.1:8080/v1#m",
    "openai:#model",
])
def test_invalid_specs_are_input_errors_listing_the_forms(no_env, spec):
    """Given a spec that fits no form, when parsed, then InputError names the spec and lists every form."""
    with pytest.raises(InputError) as info:
        make_llm(spec)
    assert f"'{spec}'" in info.value.message
    assert all(form in info.value.hint for form in SPEC_FORMS)


def test_a_non_string_spec_is_an_input_error(no_env):
    """Given a number as spec, when parsed, then InputError (not a crash)."""
    with pytest.raises(InputError):
        make_llm(42)  # type: ignore[arg-type]


def test_missing_gguf_names_the_file_and_the_fetch_command(no_env, tmp_path, monkeypatch):
    """Given an empty models folder, when the default local model is used, then LLMUnavailable names the
    missing file and `vistrace models fetch qwen-0.5b`."""
    monkeypatch.setenv("VISTRACE_MODELS_DIR", str(tmp_path / "models"))
    llm = make_llm("local")
    with pytest.raises(LLMUnavailable) as info:
        llm.complete(HELLO)
    assert "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" in info.value.message
    assert "vistrace models fetch qwen-0.5b" in info.value.hint
    with pytest.raises(LLMUnavailable, match="x.gguf"):
        list(LocalLlama(tmp_path / "x.gguf").stream(HELLO))


def test_corrupt_registered_gguf_is_unavailable_with_the_force_fix(no_env, tmp_path, monkeypatch):
    """Given a registered GGUF whose bytes are wrong, when it is used, then LLMUnavailable says it is corrupt
    and how to fetch it again."""
    monkeypatch.setenv("VISTRACE_MODELS_DIR", str(tmp_path / "models"))
    llm = make_llm("local:qwen-1.5b")
    llm.model_path.parent.mkdir(parents=True)
    llm.model_path.write_bytes(b"GGUF but not really")
    with pytest.raises(LLMUnavailable) as info:
        llm.complete(HELLO)
    assert "corrupt" in info.value.message and "vistrace models fetch qwen-1.5b --force" in info.value.hint


def test_missing_llama_cpp_names_the_pip_extra(no_env, tmp_path, monkeypatch):
    """Given llama_cpp cannot be imported, when a local model file is used, then LLMUnavailable names the
    package and the pip extra that installs it."""
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)   # makes `import llama_cpp` raise ImportError
    with pytest.raises(LLMUnavailable) as info:
        LocalLlama(path).complete(HELLO)
    assert "llama-cpp-python" in info.value.message and "vistrace[agent]" in info.value.hint


def test_importing_the_package_stays_light():
    """Given a fresh interpreter, when vistrace.agent.llm is imported, then neither httpx nor llama_cpp is."""
    import subprocess

    code = ("import sys, vistrace.agent.llm; "
            "print(sorted(m for m in ('httpx', 'llama_cpp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
