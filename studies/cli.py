"""`hill-app study` and `hill-app report` (parsers in hill_app/cli.py; the work here).

The study window is hill_app.gui's, which imports studies: this package never imports the window; the
command line passes in a function that does (``window``), so the two have no import cycle.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
# imports the study window and returns its entry (run_study_gui) and error type (StudyWindowError)
WindowLoader = Callable[[], tuple[Callable[..., int], type[Exception]]]


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def study_main(args: Any, window: WindowLoader | None = None) -> int:
    """Run one participant session. With --scripted: headless, from an edits file. Without: the study window,
    which ``window()`` imports (hill_app/cli.py passes it)."""
    from hill_app.datasets import DataError
    from hill_app.engine.config import ConfigError
    from hill_app.engine.edits_file import EditsFileError

    from .protocol import ProtocolError, load_protocol, resolve_protocol_path
    from .questionnaires import AnswerError
    from .runner import StudyError, check_participant, run_participant

    try:
        protocol = load_protocol(resolve_protocol_path(args.protocol))
        check_participant(args.participant)
    except (ProtocolError, StudyError) as e:
        return _err(str(e))
    if not getattr(args, "scripted", None):
        return _study_window(protocol, args, window)
    answers, source = None, None
    answers_path = getattr(args, "answers", None)
    if answers_path:
        try:
            answers = json.loads(Path(answers_path).read_text(encoding="utf-8"))
        except OSError as e:
            return _err(f"{answers_path}: cannot read the answers file ({e.strerror or e})")
        except json.JSONDecodeError as e:
            return _err(f"{answers_path} line {e.lineno} column {e.colno}: not valid JSON ({e.msg})")
        source = str(answers_path)
    out = Path(args.out)
    print(
        f"study {protocol.name!r}: participant {args.participant}, conditions "
        f"{', '.join(protocol.conditions)}, pauses before epochs {', '.join(map(str, protocol.pause_at))} "
        f"-> {out / args.participant}",
        file=sys.stderr,
    )
    try:
        res = run_participant(
            protocol,
            args.participant,
            out,
            scripted=args.scripted,
            answers=answers,
            answers_source=source,
            device=getattr(args, "device", None),
            progress=sys.stderr,
        )
    except (StudyError, EditsFileError, AnswerError, ConfigError, DataError) as e:
        return _err(str(e))
    accs = ", ".join(f"{c} {r['test_accuracy']:.4f}" for c, r in res["conditions"].items())
    gain = "" if res["gain"] is None else f", gain {res['gain'] * 100:+.2f} pp"
    print(f"\ndone: test accuracy {accs}{gain} -> {res['dir']}\nreport: hill-app report {out}", file=sys.stderr)
    return 0


def _study_window(protocol: Any, args: Any, window: WindowLoader | None) -> int:
    """The interactive session: checked here (so a mistake is a message, not an empty window), then the window.

    Exit status 0 when the session completed, 1 when the participant closed the window before the end (the
    session is logged as incomplete), 2 for a usage error. Qt is imported only by ``window()``: ``studies``
    stays Qt-free.
    """
    if getattr(args, "answers", None):
        return _err(
            "--answers belongs to a scripted participant (--scripted); in the study window the "
            "participant answers the questionnaires"
        )
    from hill_app.engine.config import ConfigError

    out = Path(args.out)
    pdir = out / args.participant
    if pdir.exists() and any(pdir.iterdir()):
        return _err(f"{pdir} already holds a session; choose another participant id or study folder")
    try:
        protocol.run_config(getattr(args, "device", None))
    except ConfigError as e:
        return _err(str(e))
    if window is None:
        return _err("the study window is not available here; run the session with hill-app study")
    try:
        run_study_gui, StudyWindowError = window()
    except ImportError as e:
        return _err(f"the study window needs the GUI packages (PySide6, pyqtgraph): {e}")
    print(f"study {protocol.name!r}: participant {args.participant} in the study window -> {pdir}", file=sys.stderr)
    try:
        code = run_study_gui(protocol, args.participant, out, device=getattr(args, "device", None))
    except StudyWindowError as e:
        return _err(str(e))
    if code == 0:
        print(f"session complete -> {pdir}\nreport: hill-app report {out}", file=sys.stderr)
    elif (pdir / "study_log.jsonl").exists():
        print(f"the session did not finish; it is logged as incomplete in {pdir}", file=sys.stderr)
    else:
        print("the window was closed before the session started; nothing was written", file=sys.stderr)
    return code


def report_main(args: Any) -> int:
    from .report import ReportError, build_report

    try:
        index = build_report(args.study_dir, getattr(args, "out", None))
    except ReportError as e:
        return _err(str(e))
    print(f"report: {index}\ntable: {index.parent / 'results.csv'}", file=sys.stderr)
    return 0
