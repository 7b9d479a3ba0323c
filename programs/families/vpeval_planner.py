"""The LLM planner for open-ended VPEval prompts: few-shot from the program library, grammar-constrained.

The model sees the VPEval modules and the library's VPEval programs (``programs/library/vpeval_*.vp``,
each headed by ``# prompt: ...``) and writes one program for the prompt. Where the client supports
GBNF (local llama.cpp, llama.cpp servers), decoding is constrained by :data:`VPEVAL_GRAMMAR`, so
even a small model writes only well-formed module calls; the program is then checked by the
sandbox's checker before it runs (``vistrace.check``), and a rejected program is an item error that
names the problems.
"""

from __future__ import annotations

from dataclasses import dataclass

from vistrace.errors import ProgramError

from .vpeval_programs import Task, with_program

# Module calls only, at most eight, each argument a short quoted text without ' ; or newline.
VPEVAL_GRAMMAR = r"""
root   ::= module (";" module){0,7}
module ::= object | count | spatial | scale | text | vqa
object ::= "objectEval(image, '" name "')"
count  ::= "countEval(objDet(image, '" name "'), '==" num "')"
spatial ::= "spatialEval(image, '" name "," name "," srel "')"
scale  ::= "scaleEval(image, '" name "," name "," zrel "')"
text   ::= "textEval(ocr(image), '" words "')"
vqa    ::= "vqa(image, '" words "?', '" name ("," name){1,4} "', '" name "')"
srel   ::= "left" | "right" | "above" | "below" | "front" | "behind"
zrel   ::= "bigger" | "smaller" | "same"
num    ::= [1-9] | "1" [0-9]
name   ::= [a-z] [a-z ]{0,24}
words  ::= [A-Za-z0-9] [A-Za-z0-9 .!-]{0,40}
"""

SYSTEM = ("You write VPEval evaluation programs: ';'-separated calls that check whether an image matches "
          "a text-to-image prompt. Modules: objectEval(image, 'object') - the object is there; "
          "countEval(objDet(image, 'object'), '==N') - exactly N of them; spatialEval(image, 'A,B,relation') "
          "- B is <relation> A (left, right, above, below, front, behind); scaleEval(image, 'A,B,relation') - "
          "B is bigger/smaller/same than A; textEval(ocr(image), 'text') - the text is written; "
          "vqa(image, 'question?', 'choice1,choice2', 'answer') - for colours, actions and everything else. "
          "Check every object, count, relation and written text the prompt asks for. Write only the program.")


@dataclass(frozen=True)
class FewShot:
    prompt: str
    program: str


def library_shots() -> list[FewShot]:
    """The library's VPEval programs with their ``# prompt:`` headers."""
    from vistrace.programs import library

    shots = []
    for name, source in library().items():
        if not name.startswith("vpeval_"):
            continue
        lines = source.strip().splitlines()
        prompt = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("# prompt:")), None)
        body = "\n".join(ln for ln in lines if not ln.startswith("#")).strip()
        if prompt and body:
            shots.append(FewShot(prompt, body))
    return shots


def messages_for(prompt: str, shots: list[FewShot]):
    """The chat messages asking for the program of ``prompt``."""
    from vistrace.agent.llm import Message

    msgs = [Message("system", SYSTEM)]
    for s in shots:
        msgs += [Message("user", f"Prompt: {s.prompt}"), Message("assistant", s.program)]
    msgs.append(Message("user", f"Prompt: {prompt}"))
    return msgs


class VPEvalPlanner:
    """Plans a task: the deterministic rules when a template fits, else the LLM (checked before use)."""

    def __init__(self, llm=None, *, max_tokens: int = 320):
        from vistrace.agent.llm import make_llm

        self.llm = make_llm(llm)
        self.shots = library_shots()
        self.max_tokens = max_tokens

    def write(self, prompt: str) -> str:
        """The LLM's program for a prompt (grammar-constrained where the client supports it)."""
        msgs = messages_for(prompt, self.shots)
        done = self.llm.complete(msgs, grammar=VPEVAL_GRAMMAR, max_tokens=self.max_tokens, temperature=0.0)
        return done.text.strip().strip("`").strip()

    def __call__(self, task: Task) -> Task:
        from vistrace import check
        from vistrace.sandbox import errors

        from .prompt_rules import rules_program

        plan = rules_program(task.prompt)
        if plan is not None:
            return with_program(task, plan.program, "rules", plan.skill, plan.sub)
        program = self.write(task.prompt)
        problems = errors(check(program))
        if problems:
            raise ProgramError(f"the planner's program for {task.prompt!r} was rejected: {problems[0]}", problems)
        return with_program(task, program, "llm")
