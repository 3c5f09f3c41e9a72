"""What became of a command, in words: one reading shared by the panels, the checkpoint tree and the log."""

from __future__ import annotations

from typing import Any

STATUS_COLOURS = {
    "requested": "#8a8a8a",
    "pending": "#b7791f",
    "running": "#2b6cb0",
    "success": "#2f855a",
    "failed": "#c53030",
}
PERCENT_KEYS = ("accuracy",)  # result values that are fractions shown as percentages


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "none"
    return str(v)


def describe_result(rec: dict[str, Any]) -> str:
    """A short human reading of a command's result ('lr 0.05 -> 0.01'), or its reason when it failed."""
    if rec.get("status") == "failed":
        return str(rec.get("reason") or "failed")
    res = rec.get("result") or {}
    if not isinstance(res, dict) or not res:
        return ""
    cmd = rec.get("command")
    if "old" in res and "new" in res:
        old, new = res["old"], res["new"]
        if isinstance(old, dict) and isinstance(new, dict):
            return ", ".join(f"{k} {fmt(old.get(k))} \u2192 {fmt(new[k])}" for k in new)
        return f"{fmt(old)} \u2192 {fmt(new)}"
    if cmd == "save_checkpoint":
        return f"checkpoint {str(res.get('uuid', ''))[:8]} at epoch {res.get('epoch')}, step {res.get('step')}"
    if cmd == "do_evaluate":
        parts = []
        for k, v in res.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            name = k.split("_", 1)[1] if "_" in k else k
            parts.append(f"{name} {100 * v:.2f}%" if name in PERCENT_KEYS else f"{name} {fmt(v)}")
        return ", ".join(parts)
    if cmd == "set_latent_targets":
        text = f"{res.get('edits')} edit(s) \u2192 targets for {res.get('classes')} classes"
        return text + (", resumed" if res.get("resumed") else "")
    if cmd == "load_checkpoint":
        return f"now on branch {res.get('branch')} (from {res.get('checkpoint_branch')}, epoch {res.get('epoch')})"
    if cmd == "refit_projection":
        return f"view refitted with {str(res.get('method', '')).upper()} after epoch {res.get('epoch')}"
    return ", ".join(f"{k} {fmt(v)}" for k, v in res.items() if not isinstance(v, (list, dict)))
