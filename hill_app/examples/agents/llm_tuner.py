"""An LLM tuner for a served run: after every epoch it pauses the job, shows an OpenAI-compatible chat model
the recent losses and asks for one JSON action, applies it through commands and resumes.

    HILL_LLM_BASE_URL=http://127.0.0.1:8000/v1 HILL_LLM_MODEL=NAME [HILL_LLM_API_KEY=...] \\
        python -m hill_app.examples.agents.llm_tuner RUN_DIR|URL [--name llm-tuner] [--max-decisions N]

The model must answer {"explanation": "...", "action": "double" | "half" | "same" | "set_lr" | "stop",
"lr": <number, for set_lr>}. An answer that is not such an object changes nothing (and says so).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from hill_app.client.remote import RemoteError, RemoteRunClient

ACTIONS = ("double", "half", "same", "set_lr", "stop")
SYSTEM = (
    "You tune the learning rate of a neural network while it trains. Reply with one JSON object: "
    '{"explanation": "<one sentence>", "action": "double" | "half" | "same" | "set_lr" | "stop", '
    '"lr": <number, only for set_lr>}.'
)


class LLMError(RuntimeError):
    pass


@dataclass
class ChatEndpoint:
    """Any OpenAI-compatible ``POST {base_url}/chat/completions``."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 120.0

    @classmethod
    def from_env(cls) -> ChatEndpoint:
        base, model = os.environ.get("HILL_LLM_BASE_URL"), os.environ.get("HILL_LLM_MODEL")
        if not base or not model:
            raise LLMError(
                "set HILL_LLM_BASE_URL (an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1) "
                "and HILL_LLM_MODEL (the model name it serves); HILL_LLM_API_KEY if it needs one"
            )
        return cls(base.rstrip("/"), model, os.environ.get("HILL_LLM_API_KEY") or None)

    def ask(self, prompt: str) -> str:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        }
        try:
            r = httpx.post(f"{self.base_url}/chat/completions", json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise LLMError(f"{self.base_url}: {e}") from None
        if r.status_code != 200:
            raise LLMError(f"{self.base_url}/chat/completions answered {r.status_code}: {r.text[:200]}")
        try:
            return str(r.json()["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(f"{self.base_url}: not a chat completion: {r.text[:200]}") from None


def parse_action(text: str) -> dict[str, Any]:
    """The model's reply as {"action", "lr"?, "explanation"}; raises ValueError saying what is wrong."""
    t = text.strip()
    if t.startswith("```"):  # some models wrap JSON in a code fence despite response_format
        t = t.strip("`").removeprefix("json").strip()
    try:
        obj = json.loads(t)
    except ValueError:
        raise ValueError(f"not JSON: {text[:120]!r}") from None
    if not isinstance(obj, dict) or str(obj.get("action", "")).lower() not in ACTIONS:
        raise ValueError(f"no action among {', '.join(ACTIONS)}: {text[:120]!r}")
    out: dict[str, Any] = {"action": str(obj["action"]).lower(), "explanation": str(obj.get("explanation", ""))[:500]}
    if out["action"] == "set_lr":
        lr = obj.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr <= 10:
            raise ValueError(f"set_lr needs 'lr' in (0, 10], got {lr!r}")
        out["lr"] = float(lr)
    return out


@dataclass
class LLMTuner:
    client: Any  # a RunClient with wait() (RemoteRunClient)
    llm: Any  # has ask(prompt) -> str
    max_decisions: int | None = None
    log: Callable[[str], None] = print
    epochs_total: int | None = None  # no decision after the last epoch
    lr: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # per epoch: epoch, step, train/val loss, lr
    decisions: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False

    def handle(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "step" and isinstance(data.get("lr"), (int, float)):
            self.lr = float(data["lr"])
        elif kind == "epoch":
            self.history.append(
                {k: data.get(k) for k in ("epoch", "step", "train_loss", "val_loss", "val_accuracy", "lr")}
            )
            self.lr = data.get("lr", self.lr)
            last = self.epochs_total is not None and (data.get("epoch") or 0) >= self.epochs_total
            if not last and (self.max_decisions is None or len(self.decisions) < self.max_decisions):
                self.decide()
            if self.max_decisions is not None and len(self.decisions) >= self.max_decisions:
                self.finished = True
        elif kind in ("finished", "error"):
            self.finished = True

    def prompt(self) -> str:
        rows = "\n".join(
            f"epoch {h['epoch']}: train loss {_f(h['train_loss'])}, validation loss {_f(h['val_loss'])}, "
            f"validation accuracy {_f(h['val_accuracy'])}, lr {_f(h['lr'])}"
            for h in self.history[-20:]
        )
        return f"Training so far (newest last):\n{rows}\nCurrent learning rate: {_f(self.lr)}. What should change?"

    def decide(self) -> None:
        """Pause, ask, apply, resume. The job waits while the model thinks; a failure changes nothing."""
        pause = self.client.wait(self.client.submit("pause_training", {"reason": "llm tuner: asking the model"}))
        ours = pause["status"] == "success"  # not ours when the run was paused already (a scheduled pause)
        decision: dict[str, Any] = {"epoch": self.history[-1]["epoch"], "lr_before": self.lr}
        try:
            reply = self.llm.ask(self.prompt())
            act = parse_action(reply)
        except (LLMError, ValueError) as e:
            decision.update(action=None, error=str(e))
            self.log(f"no change: {e}")
        else:
            decision.update(act)
            new = {
                "double": None if self.lr is None else self.lr * 2,
                "half": None if self.lr is None else self.lr / 2,
                "set_lr": act.get("lr"),
            }.get(act["action"])
            if act["action"] == "stop":
                self.client.submit("stop_training", {"reason": f"llm tuner: {act['explanation']}"})
                self.finished = True
            elif new is not None:
                rec = self.client.wait(self.client.submit("update_optimizer", {"lr": new}))
                decision["result"] = rec["status"] if rec["status"] == "success" else rec.get("reason")
                if rec["status"] == "success":
                    self.lr = new
            self.log(f"{act['action']} (lr {_f(decision['lr_before'])} -> {_f(self.lr)}): {act['explanation']}")
        self.decisions.append(decision)
        if ours and not self.finished:
            self.client.submit("resume_training", {})


def _f(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, (int, float)) else "n/a"


def run(tuner: LLMTuner, poll: float = 0.05, stop: Callable[[], bool] | None = None) -> None:
    if tuner.epochs_total is None:
        tuner.epochs_total = int(tuner.client.info()["config"]["epochs"])
    while not tuner.finished and not (stop is not None and stop()):
        for kind, data in tuner.client.poll_events():
            tuner.handle(kind, data)
            if tuner.finished:
                break
        time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="llm_tuner", description=__doc__.split("\n\n")[0])
    p.add_argument("target", help="the served run: its folder (control.json) or its URL")
    p.add_argument("--name", default="llm-tuner", help="recorded as source agent:NAME")
    p.add_argument("--token", help="for a URL (default: $HILL_APP_TOKEN or ~/.netrc)")
    p.add_argument("--max-decisions", type=int, help="stop after this many decisions (the run goes on)")
    a = p.parse_args(argv)
    try:
        llm = ChatEndpoint.from_env()
        client = RemoteRunClient(a.target, token=a.token, source=f"agent:{a.name}")
    except (LLMError, RemoteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tuner = LLMTuner(client, llm, max_decisions=a.max_decisions, log=lambda m: print(f"[{a.name}] {m}", flush=True))
    try:
        run(tuner)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
