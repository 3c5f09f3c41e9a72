"""What each command does to the session. Each handler validates semantics and raises CommandError with a
reason a user can act on; state is changed only after every check has passed.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import torch

from hill_app.losses import EditError

from .checkpoints import CheckpointError
from .commands import CommandError

if TYPE_CHECKING:
    from .session import TrainingSession

Handler = Callable[["TrainingSession", dict[str, Any]], dict[str, Any] | None]


def update_optimizer(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    groups = s.optimizer.param_groups
    sel = groups if "group" not in a else None
    if sel is None:
        if a["group"] >= len(groups):
            raise CommandError(f"update_optimizer: group {a['group']} does not exist (0..{len(groups) - 1})")
        sel = [groups[a["group"]]]
    changes = {k: v for k, v in a.items() if k != "group"}
    if not changes:
        raise CommandError("update_optimizer: name at least one hyperparameter (lr, momentum, weight_decay, "
                           "betas, eps, dampening)")
    for k, v in changes.items():
        if k not in sel[0]:
            raise CommandError(f"update_optimizer: {type(s.optimizer).__name__} has no hyperparameter {k!r}; "
                               f"it has {', '.join(sorted(x for x in sel[0] if x != 'params'))}")
        if k == "betas":
            if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(
                    isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in v)):
                raise CommandError(f"update_optimizer: betas must be two numbers in [0, 1), got {v!r}")
            changes[k] = (float(v[0]), float(v[1]))
        if k == "momentum" and sel[0].get("nesterov") and v == 0:
            raise CommandError("update_optimizer: Nesterov SGD needs momentum > 0")
    old = {k: sel[0][k] for k in changes}
    for g in sel:
        g.update(changes)
    return {"old": {k: list(v) if isinstance(v, tuple) else v for k, v in old.items()},
            "new": {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}}


def set_grad_clip(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    old, s.grad_clip = s.grad_clip, a["max_norm"]
    return {"old": old, "new": s.grad_clip}


def pause_training(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    if s.paused:
        raise CommandError("pause_training: already paused")
    s.paused = True
    s.pause_reason = a.get("reason", "paused on request")
    return {}


def resume_training(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    if not s.paused:
        raise CommandError("resume_training: not paused")
    if s._nonfinite:
        params_ok = all(torch.isfinite(p).all() for p in s.model.parameters())
        if not params_ok:
            raise CommandError("resume_training: the weights hold NaN or inf after the non-finite step; "
                               "load a checkpoint first")
        s._nonfinite = False
    s.paused = False
    return {}


def stop_training(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    s.stop_requested = True
    s.paused = False
    return {}


def save_checkpoint(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    node = s.save_checkpoint(note=a.get("note", "manual"))
    return {"uuid": node["uuid"], "branch": node["branch"], "step": node["step"], "epoch": node["epoch"]}


def load_checkpoint(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    try:
        node = s.tree.get(a["uuid"])
        state = s.tree.load(a["uuid"])
        backup = s.checkpoint_state()
        try:
            s.restore_state(state)
        except (CheckpointError, CommandError):
            s.restore_state(backup)
            raise
    except (CheckpointError, CommandError) as e:
        raise CommandError(f"load_checkpoint: {e}") from None
    old_branch = s.branch
    s.branch = s.tree.unique_branch(a.get("branch_name") or f"{node['branch']}-from-e{node['epoch']}",
                                    taken=s.known_branches)
    s.known_branches.add(s.branch)
    s.parent_ckpt = node["uuid"]
    # the new branch has its own scheduled pauses from here on
    s._paused_for = {(s.branch, e) for e in s.config.pause_at if e <= s.epoch}
    s.journal.write("branch", branch=s.branch, from_branch=old_branch, checkpoint=node["uuid"], step=s.step,
                    epoch=s.epoch)
    if s.projection is not None:  # the view must show the loaded model, or edits would be made on a stale one
        s.snapshot("load")
    return {"branch": s.branch, "from_branch": old_branch, "epoch": s.epoch, "step": s.step,
            "checkpoint": node["uuid"], "checkpoint_branch": node["branch"]}


def _layer(s: "TrainingSession", name: str) -> torch.nn.Module:
    modules = dict(s.model.named_modules())
    if name not in modules or name == "":
        leaves = [n for n, m in s.model.named_modules() if n and not list(m.children())]
        raise CommandError(f"no layer named {name!r}; layers: {', '.join(leaves[:40])}"
                           + (" ..." if len(leaves) > 40 else ""))
    return modules[name]


def model_layer_operation(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    m = _layer(s, a["layer_name"])
    op = a["operation"]
    params = list(m.parameters())
    if op == "reset_parameters":
        targets = [x for x in m.modules() if hasattr(x, "reset_parameters")]
        if not targets:
            raise CommandError(f"model_layer_operation: layer {a['layer_name']!r} has no parameters to reset")
        for x in targets:
            x.reset_parameters()
        s.train_step.invalidate()
        return {"reset": len(targets)}
    if not params:
        raise CommandError(f"model_layer_operation: layer {a['layer_name']!r} has no parameters to {op}")
    for p in params:
        p.requires_grad_(op == "unfreeze")
        if op == "freeze":
            p.grad = None
    s.train_step.invalidate()
    return {"parameters": sum(p.numel() for p in params), "trainable": op == "unfreeze"}


def model_layer_parameter_update(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    m = _layer(s, a["layer_name"])
    name, v = a["param_name"], a["value"]
    if name == "p":
        if not isinstance(m, torch.nn.modules.dropout._DropoutNd):
            raise CommandError(f"model_layer_parameter_update: 'p' applies to dropout layers; "
                               f"{a['layer_name']!r} is {type(m).__name__}")
        if not 0 <= v < 1:
            raise CommandError(f"model_layer_parameter_update: dropout p must be in [0, 1), got {v}")
        old, m.p = m.p, float(v)
    else:
        if not isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            raise CommandError(f"model_layer_parameter_update: 'momentum' applies to batch-norm layers; "
                               f"{a['layer_name']!r} is {type(m).__name__}")
        old, m.momentum = m.momentum, float(v)
    s.train_step.invalidate()
    return {"old": old, "new": float(v)}


def update_dataset(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    from .dataset_updates import add_samples, drop_samples
    if a["action"] == "drop":
        if "indices" not in a:
            raise CommandError("update_dataset: 'drop' needs 'indices' (training-sample indices)")
        return drop_samples(s, a["indices"])
    if "path" not in a:
        raise CommandError("update_dataset: 'add' needs 'path' (a file in the data set's own format)")
    return add_samples(s, a["path"])


def update_dataset_runtime_hyperparameters(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    w = a["class_weights"]
    k = s.data.num_classes
    if w is None:
        s.class_weights = None
        return {"class_weights": None}
    if isinstance(w, dict):
        try:
            items = {int(c): v for c, v in w.items()}
        except ValueError:
            raise CommandError("update_dataset_runtime_hyperparameters: class_weights keys must be class indices")
        vec = [1.0] * k
        for c, v in items.items():
            if not 0 <= c < k:
                raise CommandError(f"update_dataset_runtime_hyperparameters: class {c} does not exist (0..{k - 1})")
            vec[c] = v
        w = vec
    if not isinstance(w, list) or len(w) != k:
        raise CommandError(f"update_dataset_runtime_hyperparameters: class_weights must be a list of {k} numbers "
                           "or an object {class: weight}")
    for v in w:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise CommandError(f"update_dataset_runtime_hyperparameters: weights must be finite and >= 0, got {v!r}")
    if sum(w) <= 0:
        raise CommandError("update_dataset_runtime_hyperparameters: at least one weight must be > 0")
    present = torch.bincount(s.data.train_y[s.active], minlength=k)
    if all(w[c] == 0 or present[c] == 0 for c in range(k)):
        raise CommandError("update_dataset_runtime_hyperparameters: no class with weight > 0 has samples")
    s.class_weights = torch.tensor(w, dtype=torch.float64)
    return {"class_weights": w}


def do_evaluate(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    split = a.get("split", "val")
    m = s.evaluate(split)
    s.journal.write("evaluation", split=split, epoch=s.epoch, step=s.step, branch=s.branch, **m)
    s.events.emit("evaluation", split=split, epoch=s.epoch, step=s.step, **m)
    return {k: v for k, v in m.items() if not isinstance(v, list)}


def set_latent_targets(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    points = s.view_points() if s.projection is not None else None  # once, for the layout and the snapshot
    try:
        layout = s.apply_edits_to_current(a["edits"], points)
    except EditError as e:
        raise CommandError(f"set_latent_targets: {e}") from None
    s.commit_layout(layout)
    s.edits_applied += len(a["edits"])
    s.journal.write("targets", epoch=s.epoch, step=s.step, branch=s.branch, edits=a["edits"],
                    layout=layout.to_json())
    s.snapshot("commit", points)
    return {"classes": layout.num_classes, "points": len(layout.points), "edits": len(a["edits"])}


def clear_latent_targets(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    had = s.layout is not None
    s.commit_layout(None)
    return {"cleared": had}


def set_alpha(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    old, s.alpha = s.alpha, float(a["alpha"])
    return {"old": old, "new": s.alpha}


def set_lambda(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    old, s.lam = s.lam, float(a["lam"])
    return {"old": old, "new": s.lam}


def refit_projection(s: "TrainingSession", a: dict[str, Any]) -> dict[str, Any]:
    if s.epoch < 1:
        raise CommandError("refit_projection: train at least one epoch first")
    if s.layout is not None:
        raise CommandError("refit_projection: the committed targets live in the current view; clear them first "
                           "(clear_latent_targets), then refit")
    p = s.fit_projection(a.get("method"))
    s.snapshot("refit")
    return {"method": p.method, "epoch": p.fitted_epoch}


HANDLERS: dict[str, Handler] = {f.__name__: f for f in [
    update_optimizer, set_grad_clip, pause_training, resume_training, stop_training, save_checkpoint,
    load_checkpoint, model_layer_operation, model_layer_parameter_update, update_dataset,
    update_dataset_runtime_hyperparameters, do_evaluate, set_latent_targets, clear_latent_targets, set_alpha,
    set_lambda, refit_projection]}
