"""The example agents against a real served digits run: the rule tuner (a loss spike caused by a script's lr
jump -> pause, checkpoint, halve, resume; a validation-loss rise -> halve) and the LLM tuner against a loopback
stand-in OpenAI-compatible endpoint. Every command is journaled with its source."""

from __future__ import annotations

import json
import threading

import pytest
from server_helpers import StandInLLM, served

from hill_app.client.remote import RemoteRunClient
from hill_app.examples.agents import llm_tuner, rule_tuner


def sent(run, source):
    """The agent's commands in the journal: (command, args, final status), in the order they were submitted."""
    out: dict[str, list] = {}
    for r in run.commands():
        if r["source"] == source:
            out.setdefault(r["uuid"], [r["command"], r["args"], None])[2] = r["status"]
    return list(out.values())


def test_rule_tuner_answers_a_loss_spike_and_a_validation_rise(tmp_path):
    with served(tmp_path / "run", epochs=9) as r:
        script = RemoteRunClient(r.run_dir, source="script", events=False)
        client = RemoteRunClient(r.run_dir, source="agent:rules")
        tuner = rule_tuner.RuleTuner(client, spike_factor=5.0, window=8, log=lambda m: None)
        jumped = threading.Event()

        def watch() -> bool:  # the script waits for epoch 3, then jumps the lr: a real spike follows
            if not jumped.is_set() and r.session.epoch >= 3:
                script.wait(script.submit("update_optimizer", {"lr": 1.0}))
                jumped.set()
            return False

        r.start()
        t = threading.Thread(target=rule_tuner.run, args=(tuner,), kwargs={"stop": lambda: watch() or False})
        t.start()
        t.join(300)
        assert tuner.finished and jumped.is_set()
        r.join()
        cmds = sent(r, "agent:rules")
        names = [c[0] for c in cmds]
        i = names.index("pause_training")
        assert names[i : i + 4] == ["pause_training", "save_checkpoint", "update_optimizer", "resume_training"]
        assert [c[2] for c in cmds[i : i + 4]] == ["success"] * 4
        assert cmds[i + 2][1] == {"lr": 0.5}
        spike = next(a for a in tuner.actions if a["command"] == "pause_training")
        assert "recent median" in spike["why"]
        notes = [n["note"] for n in client.checkpoints()]
        assert any(n.startswith("loss spike at step") for n in notes)
        later = [a for a in tuner.actions if a["command"] == "update_optimizer" and "did not improve" in a["why"]]
        assert later and all(c[2] == "success" for c in cmds if c[0] == "update_optimizer")
        assert min(c[1]["lr"] for c in cmds if c[0] == "update_optimizer") < 0.5
        client.close()
        script.close()


def test_llm_tuner_through_a_stand_in_endpoint(tmp_path, monkeypatch, capsys):
    answers = iter(
        [
            json.dumps({"explanation": "loss still falling fast", "action": "half"}),
            json.dumps({"explanation": "try a fixed value", "action": "set_lr", "lr": 0.01}),
            "I would rather not answer in JSON",
            json.dumps({"explanation": "fine as it is", "action": "same"}),
        ]
    )
    llm = StandInLLM(lambda body: next(answers))
    try:
        monkeypatch.setenv("HILL_LLM_BASE_URL", llm.base_url)
        monkeypatch.setenv("HILL_LLM_MODEL", "stand-in-model")
        monkeypatch.setenv("HILL_LLM_API_KEY", "sk-local-test")
        with served(tmp_path / "run", epochs=40) as r:
            r.start()
            assert llm_tuner.main([str(r.run_dir), "--name", "llm", "--max-decisions", "4"]) == 0
            log = capsys.readouterr().out
            cmds = sent(r, "agent:llm")
            lr = [c for c in cmds if c[0] == "update_optimizer"]
            assert [c[1] for c in lr] == [{"lr": 0.025}, {"lr": 0.01}] and {c[2] for c in lr} == {"success"}
            assert [c[0] for c in cmds].count("pause_training") == 4
            assert [c[2] for c in cmds if c[0] == "resume_training"] == ["success"] * 4
            assert "no change: not JSON" in log and "set_lr (lr 0.025 -> 0.01)" in log
            assert len(llm.requests) == 4
            req = llm.requests[1]
            assert req["auth"] == "Bearer sk-local-test" and req["model"] == "stand-in-model"
            assert req["response_format"] == {"type": "json_object"}
            assert "epoch 2: train loss" in req["messages"][1]["content"]
            assert r.thread.is_alive()  # the agent stopped; the run goes on
    finally:
        llm.close()


def test_llm_tuner_needs_its_endpoint(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("HILL_LLM_BASE_URL", raising=False)
    assert llm_tuner.main([str(tmp_path)]) == 2
    assert "HILL_LLM_BASE_URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text,ok",
    [
        ('{"action": "Half", "explanation": "x"}', True),
        ('```json\n{"action": "same"}\n```', True),
        ('{"action": "set_lr", "lr": -1}', False),
        ('{"action": "explode"}', False),
        ("[]", False),
    ],
)
def test_llm_action_parsing(text, ok):
    if ok:
        assert llm_tuner.parse_action(text)["action"] in llm_tuner.ACTIONS
    else:
        with pytest.raises(ValueError):
            llm_tuner.parse_action(text)
