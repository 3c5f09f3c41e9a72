"""What each command does to the session, declared next to it: name, when it applies, typed arguments.

The argument schema does every check that does not depend on the moment; a handler checks what depends
on the state when it is applied and raises CommandError with a reason a user can act on. State is
changed only after every check has passed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from hill_app.losses import EditError

from .argtypes import (
    Arg,
    Boolean,
    CheckpointId,
    Choice,
    ClassWeights,
    CommandContext,
    Edits,
    InputFile,
    LayerName,
    Nullable,
    Number,
    Pair,
    Text,
    TrainIndices,
)
from .checkpoints import CheckpointError
from .commands import command
from .errors import CommandError

if TYPE_CHECKING:
    from .session import TrainingSession

OPTIMIZER_ARGS = ("lr", "momentum", "weight_decay", "betas", "eps", "dampening")


def layer_kinds(model: torch.nn.Module) -> dict[str, str]:
    """Every named module of ``model`` with what the layer commands can do to it."""
    out = {}
    for n, m in model.named_modules():
        if not n:
            continue
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            out[n] = "dropout"
        elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            out[n] = "batchnorm"
        elif any(True for _ in m.parameters()):
            out[n] = "params"
        else:
            out[n] = "other"
    return out


def context_for(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    num_classes: int,
    n_train: int,
    view_size: int,
    checkpoint_uuids: frozenset[str] | None = None,
    check_files: bool = False,
) -> CommandContext:
    """The facts commands are checked against, for a model and optimiser (a running session, or one built
    to check an edits file before training starts)."""
    return CommandContext(
        num_classes=num_classes,
        n_train=n_train,
        view_size=view_size,
        optimizer=type(optimizer).__name__,
        optimizer_hparams=frozenset(k for k in optimizer.param_groups[0] if k in OPTIMIZER_ARGS),
        nesterov=bool(optimizer.param_groups[0].get("nesterov", False)),
        n_param_groups=len(optimizer.param_groups),
        layers=layer_kinds(model),
        checkpoint_uuids=checkpoint_uuids,
        check_files=check_files,
    )


def session_context(s: TrainingSession) -> CommandContext:
    """Checks at submit time, from any thread: only facts that do not change while training runs (the
    model's structure, the optimiser's kind, the classes, the view set); the training-set size and the
    checkpoints are checked again by the handler when the command is applied."""
    ctx = getattr(s, "_command_context", None)
    if ctx is None:
        ctx = context_for(
            s.model,
            s.optimizer,
            num_classes=s.data.num_classes,
            n_train=None,  # type: ignore[arg-type]
            view_size=len(s.view_idx),
        )
        s._command_context = ctx  # type: ignore[attr-defined]  # cached on the session
    return ctx


def _check_optimizer(a: dict[str, Any], ctx: CommandContext) -> None:
    changes = [k for k in a if k != "group"]
    if not changes:
        raise CommandError("name at least one hyperparameter (lr, momentum, weight_decay, betas, eps, dampening)")
    if ctx.optimizer_hparams is not None:
        for k in changes:
            if k not in ctx.optimizer_hparams:
                raise CommandError(
                    f"{ctx.optimizer or 'the optimiser'} has no hyperparameter {k!r}; it has "
                    f"{', '.join(sorted(ctx.optimizer_hparams))}"
                )
    if ctx.nesterov and a.get("momentum") == 0:
        raise CommandError("Nesterov SGD needs momentum > 0, got 0")
    if ctx.n_param_groups is not None and a.get("group", 0) >= ctx.n_param_groups:
        raise CommandError(f"group {a['group']} does not exist (0..{ctx.n_param_groups - 1})")


@command(
    "update_optimizer",
    applies="settings",
    doc="change optimiser hyperparameters (all parameter groups, or one)",
    check=_check_optimizer,
    lr=Arg(Number(0, 100, lo_open=True)),
    momentum=Arg(Number(0, 1)),
    weight_decay=Arg(Number(0, 1)),
    betas=Arg(Pair(Number(0, 1, hi_open=True)), doc="Adam's two betas, each in [0, 1)"),
    eps=Arg(Number(0, 1, lo_open=True)),
    dampening=Arg(Number(0, 1)),
    group=Arg(Number(0, integer=True), doc="one parameter group (default: all)"),
)
def update_optimizer(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    groups = s.optimizer.param_groups
    sel = groups if "group" not in a else None
    if sel is None:
        if a["group"] >= len(groups):
            raise CommandError(f"update_optimizer: group {a['group']} does not exist (0..{len(groups) - 1})")
        sel = [groups[a["group"]]]
    changes = {k: v for k, v in a.items() if k != "group"}
    if not changes:
        raise CommandError(
            "update_optimizer: name at least one hyperparameter (lr, momentum, weight_decay, betas, eps, dampening)"
        )
    for k, v in changes.items():
        if k not in sel[0]:
            raise CommandError(
                f"update_optimizer: {type(s.optimizer).__name__} has no hyperparameter {k!r}; "
                f"it has {', '.join(sorted(x for x in sel[0] if x != 'params'))}"
            )
        if k == "betas":
            changes[k] = (float(v[0]), float(v[1]))
        if k == "momentum" and sel[0].get("nesterov") and v == 0:
            raise CommandError("update_optimizer: Nesterov SGD needs momentum > 0")
    old = {k: sel[0][k] for k in changes}
    for g in sel:
        g.update(changes)
    return {
        "old": {k: list(v) if isinstance(v, tuple) else v for k, v in old.items()},
        "new": {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()},
    }


@command(
    "set_grad_clip",
    applies="settings",
    doc="clip the gradient norm (null: no clipping)",
    max_norm=Arg(Nullable(Number(0, lo_open=True)), required=True),
)
def set_grad_clip(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    old, s.grad_clip = s.grad_clip, a["max_norm"]
    return {"old": old, "new": s.grad_clip}


@command("pause_training", applies="settings", doc="pause at the next step boundary", reason=Arg(Text(500)))
def pause_training(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    if s.paused:
        raise CommandError("pause_training: already paused")
    s.paused = True
    s.pause_reason = a.get("reason", "paused on request")
    return {}


@command("resume_training", applies="pause", doc="resume a paused run")
def resume_training(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    if not s.paused:
        raise CommandError("resume_training: not paused")
    if s._nonfinite:
        params_ok = all(torch.isfinite(p).all() for p in s.model.parameters())
        if not params_ok:
            raise CommandError(
                "resume_training: the weights hold NaN or inf after the non-finite step; load a checkpoint first"
            )
        s._nonfinite = False
    s.paused = False
    return {}


@command(
    "stop_training",
    applies="settings",
    doc="stop at the next step boundary and save a final checkpoint",
    reason=Arg(Text(500)),
)
def stop_training(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    s.stop_requested = True
    s.paused = False
    return {"reason": a["reason"]} if "reason" in a else {}


@command("save_checkpoint", doc="save a checkpoint now", after_epoch_end=True, note=Arg(Text(500)))
def save_checkpoint(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    node = s.save_checkpoint(note=a.get("note", "manual"))
    return {"uuid": node["uuid"], "branch": node["branch"], "step": node["step"], "epoch": node["epoch"]}


@command(
    "load_checkpoint",
    applies="epoch",
    doc="fork a branch from a saved checkpoint and continue there",
    uuid=Arg(CheckpointId(), required=True),
    branch_name=Arg(Text(64)),
)
def load_checkpoint(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
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
    s.branch = s.tree.unique_branch(
        a.get("branch_name") or f"{node['branch']}-from-e{node['epoch']}", taken=s.known_branches
    )
    s.known_branches.add(s.branch)
    s.parent_ckpt = node["uuid"]
    # the new branch has its own scheduled pauses from here on
    s._paused_for = {(s.branch, e) for e in s.config.pause_at if e <= s.epoch}
    s.journal.write(
        "branch", branch=s.branch, from_branch=old_branch, checkpoint=node["uuid"], step=s.step, epoch=s.epoch
    )
    if s.projection is not None:  # the view must show the loaded model, or edits would be made on a stale one
        s.snapshot("load")
    return {
        "branch": s.branch,
        "from_branch": old_branch,
        "epoch": s.epoch,
        "step": s.step,
        "checkpoint": node["uuid"],
        "checkpoint_branch": node["branch"],
    }


def _check_layer_param(a: dict[str, Any], ctx: CommandContext) -> None:
    if ctx.layers is None:
        return
    kind, want = ctx.layers[a["layer_name"]], {"p": "dropout", "momentum": "batchnorm"}[a["param_name"]]
    if kind != want:
        label = {"dropout": "dropout", "batchnorm": "batch-norm"}
        raise CommandError(
            f"{a['param_name']!r} applies to {label[want]} layers; {a['layer_name']!r} is {label.get(kind, 'neither')}"
        )
    if a["param_name"] == "p" and not 0 <= a["value"] < 1:
        raise CommandError(f"dropout p must be in [0, 1), got {a['value']}")


def _check_dataset_update(a: dict[str, Any], ctx: CommandContext) -> None:
    if a["action"] == "drop" and "indices" not in a:
        raise CommandError("'drop' needs 'indices' (training-sample indices)")
    if a["action"] == "add" and "path" not in a:
        raise CommandError("'add' needs 'path' (a file in the data set's own format)")
    if a["action"] == "add" and "indices" in a or a["action"] == "drop" and "path" in a:
        raise CommandError(f"'{a['action']}' takes {'path' if a['action'] == 'add' else 'indices'} only")


def _layer(s: TrainingSession, name: str) -> torch.nn.Module:
    modules = dict(s.model.named_modules())
    if name not in modules or name == "":
        leaves = [n for n, m in s.model.named_modules() if n and not list(m.children())]
        raise CommandError(
            f"no layer named {name!r}; layers: {', '.join(leaves[:40])}" + (" ..." if len(leaves) > 40 else "")
        )
    return modules[name]


def _check_layer_operation(a: dict[str, Any], ctx: CommandContext) -> None:
    if ctx.layers is not None and ctx.layers[a["layer_name"]] not in ("params", "batchnorm"):
        raise CommandError(
            f"layer {a['layer_name']!r} has no parameters to {a['operation'].replace('_', ' ')}; "
            "expected a layer with parameters"
        )


@command(
    "model_layer_operation",
    doc="reset, freeze or unfreeze one layer",
    check=_check_layer_operation,
    layer_name=Arg(LayerName(), required=True),
    operation=Arg(Choice(("reset_parameters", "freeze", "unfreeze")), required=True),
)
def model_layer_operation(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    m = _layer(s, a["layer_name"])
    op = a["operation"]
    params = list(m.parameters())
    if op == "reset_parameters":
        targets = [x for x in m.modules() if hasattr(x, "reset_parameters")]
        if not targets:
            raise CommandError(f"model_layer_operation: layer {a['layer_name']!r} has no parameters to reset")
        for x in targets:
            x.reset_parameters()  # type: ignore[operator]  # hasattr above
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


@command(
    "model_layer_parameter_update",
    doc="dropout p or batch-norm momentum of one layer",
    check=_check_layer_param,
    layer_name=Arg(LayerName(), required=True),
    param_name=Arg(Choice(("p", "momentum")), required=True),
    value=Arg(Number(0, 1), required=True),
)
def model_layer_parameter_update(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    m = _layer(s, a["layer_name"])
    name, v = a["param_name"], a["value"]
    old: float | None
    if name == "p":
        if not isinstance(m, torch.nn.modules.dropout._DropoutNd):
            raise CommandError(
                f"model_layer_parameter_update: 'p' applies to dropout layers; "
                f"{a['layer_name']!r} is {type(m).__name__}"
            )
        if not 0 <= v < 1:
            raise CommandError(f"model_layer_parameter_update: dropout p must be in [0, 1), got {v}")
        old, m.p = m.p, float(v)
    else:
        if not isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            raise CommandError(
                f"model_layer_parameter_update: 'momentum' applies to batch-norm layers; "
                f"{a['layer_name']!r} is {type(m).__name__}"
            )
        old, m.momentum = m.momentum, float(v)
    s.train_step.invalidate()
    return {"old": old, "new": float(v)}


@command(
    "update_dataset",
    applies="epoch",
    check=_check_dataset_update,
    doc="add labelled samples from a file in the data set's own format, or drop training samples by index",
    action=Arg(Choice(("add", "drop")), required=True),
    path=Arg(InputFile()),
    indices=Arg(TrainIndices()),
)
def update_dataset(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    from .dataset_updates import add_samples, drop_samples

    if a["action"] == "drop":
        if "indices" not in a:
            raise CommandError("update_dataset: 'drop' needs 'indices' (training-sample indices)")
        return drop_samples(s, a["indices"])
    if "path" not in a:
        raise CommandError("update_dataset: 'add' needs 'path' (a file in the data set's own format)")
    return add_samples(s, a["path"])


@command(
    "update_dataset_runtime_hyperparameters",
    applies="epoch",
    doc="per-class sampling weights",
    class_weights=Arg(ClassWeights(), required=True),
)
def update_dataset_runtime_hyperparameters(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    w = a["class_weights"]  # shape and values checked by the schema
    k = s.data.num_classes
    if w is None:
        s.class_weights = None
        return {"class_weights": None}
    if isinstance(w, dict):
        vec = [1.0] * k
        for c, v in w.items():
            vec[int(c)] = v
        w = vec
    present = torch.bincount(s.data.train_y[s.active], minlength=k)
    if all(w[c] == 0 or present[c] == 0 for c in range(k)):
        raise CommandError("update_dataset_runtime_hyperparameters: no class with weight > 0 has samples")
    s.class_weights = torch.tensor(w, dtype=torch.float64)
    return {"class_weights": w}


@command("do_evaluate", doc="evaluate now and report", split=Arg(Choice(("val", "test"))))
def do_evaluate(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    split = a.get("split", "val")
    m = s.evaluate(split)
    s.journal.write("evaluation", split=split, epoch=s.epoch, step=s.step, branch=s.branch, **m)
    s.events.emit("evaluation", split=split, epoch=s.epoch, step=s.step, **m)
    return {k: v for k, v in m.items() if not isinstance(v, list)}


@command(
    "set_latent_targets",
    doc="commit latent edits as the teacher layout; with resume, also end the pause",
    edits=Arg(Edits(), required=True),
    resume=Arg(Boolean(), doc="resume training once committed"),
)
def set_latent_targets(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    points = s.view_points() if s.projection is not None else None  # once, for the layout and the snapshot
    try:
        layout = s.apply_edits_to_current(a["edits"], points)
    except EditError as e:
        raise CommandError(f"set_latent_targets: {e}") from None
    s.commit_layout(layout)
    s.edits_applied += len(a["edits"])
    s.journal.write("targets", epoch=s.epoch, step=s.step, branch=s.branch, edits=a["edits"], layout=layout.to_json())
    s.snapshot("commit", points)
    result = {"classes": layout.num_classes, "points": len(layout.points), "edits": len(a["edits"])}
    if a.get("resume"):  # commit and resume in one step: nothing can come between them
        result["resumed"] = bool(s.paused)
        if s.paused:
            resume_training(s, {})
    return result


@command("clear_latent_targets", doc="drop the teacher layout: plain cross-entropy")
def clear_latent_targets(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    had = s.layout is not None
    s.commit_layout(None)
    return {"cleared": had}


@command(
    "set_alpha",
    applies="settings",
    doc="blend of cross-entropy and the human terms",
    alpha=Arg(Number(0, 1), required=True),
)
def set_alpha(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    old, s.alpha = s.alpha, float(a["alpha"])
    return {"old": old, "new": s.alpha}


@command("set_lambda", applies="settings", doc="weight of the scale term", lam=Arg(Number(0, 100), required=True))
def set_lambda(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    old, s.lam = s.lam, float(a["lam"])
    return {"old": old, "new": s.lam}


@command(
    "refit_projection",
    applies="epoch",
    doc="refit the 2D view on the current features",
    method=Arg(Choice(("pca", "lda"))),
)
def refit_projection(s: TrainingSession, a: dict[str, Any]) -> dict[str, Any]:
    if s.epoch < 1:
        raise CommandError("refit_projection: train at least one epoch first")
    if s.layout is not None:
        raise CommandError(
            "refit_projection: the committed targets live in the current view; clear them first "
            "(clear_latent_targets), then refit"
        )
    p = s.fit_projection(a.get("method"))
    s.snapshot("refit")
    return {"method": p.method, "epoch": p.fitted_epoch}
