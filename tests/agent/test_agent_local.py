"""End to end with the real local model: Qwen2.5-Coder-0.5B (llama.cpp in-process) plans under the
registry's grammar, the program is checked and run on a real image, and the answer cites its steps.

Slow: the model loads once for the module (n_ctx 4096, 2 threads).  The registry holds the
model-free built-in tools, which keeps the prompt (and the time on 2 cores) small.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import vistrace
from vistrace.api import check
from vistrace.tools import Registry, models
from vistrace.tools.builtin import register_builtin

pytestmark = pytest.mark.slow

IMAGE = Path(__file__).resolve().parents[2] / "examples" / "images" / "chelsea.jpg"   # 451x300


@pytest.fixture(scope="module")
def llm():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'vistrace[agent]')")
    ok, why = models.status("qwen-0.5b")
    if not ok:
        pytest.skip(f"the 0.5B model is not here: {why} (vistrace models fetch qwen-0.5b)")
    from vistrace.agent.llm import make_llm

    return make_llm("local", n_ctx=4096, n_threads=2).load()


def test_local_model_answers_with_a_checked_run_program(llm):
    """Given the 0.5B model with typed grammar-constrained decoding (one statement at a time) and a photo 451 px wide,
    when asked how wide the image is,
    then the agent answers 451 with a program that passes check, whose run is in the trace."""
    reg = Registry()
    register_builtin(reg)
    agent = vistrace.Agent(llm=llm, registry=reg, cache=False)
    ans = agent.ask(IMAGE, "How wide is the image, in pixels?")
    assert ans.value == 451
    assert ans.attempts[-1].mode == "typed" and ans.attempts[-1].stage == "answered"
    assert not [p for p in check(ans.program, reg) if p.severity == "error"]
    assert ans.run.ok and ans.trace.program == ans.program
