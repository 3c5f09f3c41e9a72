"""Run `hill-app` with a fault injected at a deterministic moment (used by test_faults.py in a subprocess).

    python tests/fault_driver.py '{"kind": "before_replace", "match": ".pt", "nth": 2}' train ...

kinds (each ends the process with os._exit(137), as SIGKILL would, at the nth matching moment):
  before_replace  a crash-safe write has its temporary file complete but not yet renamed over ``match``
  after_replace   the file ``match`` was just renamed into place; nothing after it happened
  journal_before  the journal record of type ``match`` is about to be written
  journal_torn    half of the journal record of type ``match`` reached the disk
  after_command   the command ``match`` has just been applied (its success journaled)
and one that does not end it:
  hold            before the journal record of type ``match``: create the file ``ready``, then wait until the
                  file ``go`` exists (so a test can act while the run is at a known point, e.g. send a signal)
"""

from __future__ import annotations

import json
import os
import sys


def install(spec: dict) -> None:
    kind, match, nth = spec["kind"], spec["match"], int(spec.get("nth", 1))
    seen = {"n": 0}

    def hit() -> bool:
        seen["n"] += 1
        return seen["n"] == nth

    if kind in ("before_replace", "after_replace"):
        real = os.replace

        def replace(src, dst, *a, **kw):
            if match in str(dst) and hit():
                if kind == "after_replace":
                    real(src, dst, *a, **kw)
                os._exit(137)
            return real(src, dst, *a, **kw)

        os.replace = replace
    elif kind == "hold":
        import time
        from pathlib import Path

        from hill_app.engine import journal

        real_hold = journal.Journal.write

        def write_held(self, type_, **fields):
            if type_ == match and hit():
                Path(spec["ready"]).write_text(str(os.getpid()))
                while not Path(spec["go"]).exists():
                    time.sleep(0.02)
            return real_hold(self, type_, **fields)

        journal.Journal.write = write_held
    elif kind in ("journal_before", "journal_torn"):
        from hill_app.engine import journal

        real_write = journal.Journal.write

        def write(self, type_, **fields):
            if type_ == match and hit():
                if kind == "journal_torn":
                    line = json.dumps({**fields, "seq": self.seq, "type": type_}, separators=(",", ":"))
                    self._f.write(line[: len(line) // 2])
                    self._f.flush()
                    os.fsync(self._f.fileno())
                os._exit(137)
            return real_write(self, type_, **fields)

        journal.Journal.write = write
    elif kind == "after_command":
        from hill_app.engine import session

        real_apply = session.TrainingSession._apply

        def _apply(self, cmd, at_boundary):
            done = real_apply(self, cmd, at_boundary)
            if cmd.command == match and cmd.status == "success" and hit():
                os._exit(137)
            return done

        session.TrainingSession._apply = _apply
    else:
        raise SystemExit(f"unknown fault kind {kind!r}")


if __name__ == "__main__":
    install(json.loads(sys.argv[1]))
    from hill_app.cli import main

    sys.exit(main(sys.argv[2:]))
