"""The training step, kept apart from the session so it can be fused (compiled, CUDA-graphed) without the
session knowing. It trains on :func:`hill_app.losses.hill_loss`, the loss the tests pin, and returns one stats
tensor per step so the loop syncs once per report. The ways to run it and why: docs/architecture.md
("The training step") and docs/speed.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from hill_app.losses import LossWeights, hill_loss
from hill_app.losses.hill_loss import CE_WEIGHTS, GraphedHillLoss

from .config import RunConfig
from .events import EventChannel
from .projection import Projection


class StepInputs(Protocol):
    """What a step reads: the model, optimiser and loss with their knobs (the session provides them; the step
    never sees the rest of it). Read at every call, so a command that changes one takes effect at the next step."""

    config: RunConfig
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    use_compile: bool
    targets: Any  # the committed layout's tensors (hill_app.losses), or None
    projection: Projection | None
    weights: LossWeights
    grad_clip: float | None
    alpha: float
    lam: float
    hill_cpu_kernel: str | None  # the HILL loss's CPU arithmetic (hill_app.losses.hill_loss.cpu_kernel)
    events: EventChannel

    @property
    def autocast(self) -> Any: ...


# order of the values in the stats tensor a step returns
STEP_STATS = ("loss", "ce", "center", "spread", "sep", "point", "scale", "grad_norm", "correct")


@dataclass
class _Captured:
    key: tuple
    graph: Any  # torch.cuda.CUDAGraph
    x: torch.Tensor  # static inputs the batch is copied into
    y: torch.Tensor
    idx: torch.Tensor
    out: torch.Tensor  # static stats, overwritten by every replay
    refs: tuple  # objects whose id() is in the key: held so that no id can be reused


def _hp(v: Any) -> Any:
    """A comparable stand-in for an optimiser hyperparameter (a tensor compares by address and dtype)."""
    if isinstance(v, torch.Tensor):
        return ("tensor", v.data_ptr(), v.dtype, v.device)
    if isinstance(v, list):
        return tuple(_hp(x) for x in v)
    return v


def _capturable_optimizer(opt: torch.optim.Optimizer) -> bool:
    """SGD captures as it is; Adam-family optimisers only with ``capturable=True`` (their step count)."""
    if isinstance(opt, torch.optim.SGD):
        return True
    return all(g.get("capturable", False) for g in opt.param_groups)


class TrainStep:
    """One optimiser step on a batch; ``__call__(x, y, idx)`` returns the stats tensor (``STEP_STATS`` order).

    ``grad_norm`` is the total gradient norm before clipping; with ``session.grad_clip`` set, the gradients
    the optimiser applies are scaled so their norm is at most ``grad_clip``.
    """

    warmup_steps = 3  # ordinary steps after any change before a (re)capture

    def __init__(self, inputs: StepInputs):
        self.s = inputs
        self.cuda_graphs: bool | None = None  # None: on for CUDA when config.compile is set
        self.compile_options: dict[str, Any] = {}  # passed to torch.compile (tests use backend='eager')
        self.compile_model: bool | None = None  # also compile the model's forward; None: on CUDA when compiling
        self.graph_loss: bool | None = None  # None: on CUDA, graph the HILL loss when the step runs eager
        self._graphed_loss: GraphedHillLoss | None = None
        self._graphed_loss_error: str | None = None
        self._fwd_c: Callable | None = None
        self._loss_c: Callable | None = None
        self._captured: _Captured | None = None
        self._key: tuple | None = None
        self._since_change = 0
        self._replays = 0
        self._warm_needed = self.warmup_steps
        self._graph_error: str | None = None
        self._side: Any = None  # torch.cuda.Stream for warm-up and capture
        self.captures = 0
        self._scalars: dict[str, tuple[float, torch.Tensor, torch.device]] = {}

    # ---------------------------------------------------------------- state

    def invalidate(self) -> None:
        """Forget compiled wrappers and the captured graph (after a layer was frozen, reset or a checkpoint loaded)."""
        self._fwd_c = None
        self._loss_c = None
        self._captured = None
        self._graphed_loss = None
        self._key = None
        self._since_change = 0
        self._replays = 0
        self._warm_needed = self.warmup_steps

    @property
    def ce_weight(self) -> str:
        """The run's C2 loss option: "blend" (the paper's (1 - alpha) CE) or "full" (CE at weight 1)."""
        cw = getattr(self.s.config, "ce_weight", "blend")
        if cw not in CE_WEIGHTS:
            raise ValueError(f"config ce_weight: expected one of {', '.join(CE_WEIGHTS)}, got {cw!r}")
        return cw

    @property
    def graphed(self) -> bool:
        """Whether the last step was a replay of a captured graph."""
        return self._captured is not None and self._captured.key == self._key

    def _graphs_on(self) -> bool:
        s = self.s
        if s.device.type != "cuda" or self._graph_error is not None:
            return False
        on = self.cuda_graphs if self.cuda_graphs is not None else bool(s.use_compile)
        return on and _capturable_optimizer(s.optimizer)

    def _scalar(self, name: str, value: float) -> torch.Tensor:
        """A device scalar holding ``value``, updated in place so compiled code and graphs see the change.

        The same tensor (the same address) step after step: a captured graph reads it where it was captured.
        """
        value = float(value)
        cur = self._scalars.get(name)
        if cur is None or cur[2] != self.s.device:
            t = torch.tensor(value, device=self.s.device)
            self._scalars[name] = (value, t, self.s.device)
            return t
        if cur[0] != value:
            cur[1].fill_(value)
            self._scalars[name] = (value, cur[1], cur[2])
        return cur[1]

    @property
    def model_compiled(self) -> bool:
        """Whether the model's forward is compiled too: with config.compile on CUDA unless set."""
        if self.compile_model is not None:
            return bool(self.compile_model)
        return bool(self.s.use_compile) and self.s.device.type == "cuda"

    def _fns(self) -> tuple[Callable, Callable]:
        if not self.s.use_compile:
            return self._forward, self._loss
        opts = {"dynamic": False, **self.compile_options}
        if self._loss_c is None:
            self._loss_c = torch.compile(self._loss, **opts)
        compiled_model = self.model_compiled
        if compiled_model and self._fwd_c is None:
            self._fwd_c = torch.compile(self._forward, **opts)
        return (self._fwd_c if compiled_model else self._forward), self._loss_c  # type: ignore[return-value]  # set above

    def _loss_graphable(self) -> bool:
        s = self.s
        on = self.graph_loss if self.graph_loss is not None else True
        return (
            on
            and s.device.type == "cuda"
            and not s.use_compile
            and self._graphed_loss_error is None
            and not torch.cuda.is_current_stream_capturing()
        )

    # ---------------------------------------------------------------- the step itself

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.s.autocast:
            return self.s.model(x)

    def _loss(
        self,
        logits: torch.Tensor,
        feats: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        hill: bool,
        alpha: torch.Tensor,
        lam: torch.Tensor,
        ce_weight: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss (:func:`hill_app.losses.hill_loss`, the one the tests pin) and the stats without the grad
        norm: loss, ce, 5 terms, correct."""
        s = self.s
        if hill and self._loss_graphable():
            loss, terms = self._graphed(logits, feats, y, idx, alpha, lam, ce_weight)
        elif hill:
            pr = s.projection
            assert pr is not None  # fitted before there are targets
            loss, terms = hill_loss(
                logits,
                feats,
                y,
                idx,
                s.targets,
                alpha,
                lam,
                weights=s.weights,
                ce_weight=ce_weight,
                project=(pr.weight, pr.bias),
                cpu_kernel=s.hill_cpu_kernel,
            )
        else:
            loss, terms = hill_loss(logits, None, y, idx, None, alpha, lam)
        correct = (logits.argmax(dim=1) == y).sum().float()
        return loss, torch.cat([loss.detach().view(1), terms, correct.view(1)])

    def _graphed(
        self,
        logits: torch.Tensor,
        feats: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        alpha: torch.Tensor,
        lam: torch.Tensor,
        ce_weight: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The HILL loss replayed from a CUDA graph (eager CUDA steps); on a failed capture, say so once and go
        on with the ordinary path."""
        s = self.s
        pr = s.projection
        assert pr is not None  # fitted before there are targets
        args: dict[str, Any] = dict(weights=s.weights, ce_weight=ce_weight, project=(pr.weight, pr.bias))
        if self._graphed_loss is None:
            self._graphed_loss = GraphedHillLoss()
        try:
            return self._graphed_loss(logits, feats, y, idx, s.targets, alpha, lam, **args)
        except Exception as e:  # noqa: BLE001 - the graph is an optimisation: report it, train on without it
            self._graphed_loss_error = f"{type(e).__name__}: {e}"
            self._graphed_loss = None
            try:
                torch.cuda.synchronize(s.device)
            except RuntimeError as sync_error:
                self._graphed_loss_error += f"; then {sync_error}"
            s.events.emit(
                "log",
                level="warning",
                message=f"CUDA graph of the HILL loss failed; training on without it ({self._graphed_loss_error})",
            )
            return hill_loss(logits, feats, y, idx, s.targets, alpha, lam, **args)

    def _body(
        self,
        fwd: Callable,
        lossfn: Callable,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        hill: bool,
        alpha: torch.Tensor,
        lam: torch.Tensor,
        ce_weight: str,
    ) -> torch.Tensor:
        s = self.s
        logits, feats = fwd(x)
        loss, head = lossfn(logits, feats, y, idx, hill, alpha, lam, ce_weight)
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in s.model.parameters() if p.grad is not None]
        if params:
            gn = torch.nn.utils.get_total_norm([p.grad for p in params])  # type: ignore[misc]  # all set
            if s.grad_clip is not None:
                torch.nn.utils.clip_grads_with_norm_(params, s.grad_clip, gn)
        else:
            gn = head.new_zeros(())
        s.optimizer.step()
        return torch.cat([head[:7], gn.detach().float().view(1), head[7:]])

    # ---------------------------------------------------------------- CUDA graphs

    def _graph_key(
        self,
        hill: bool,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        alpha: torch.Tensor,
        lam: torch.Tensor,
        ce_weight: str,
    ) -> tuple[tuple, tuple]:
        """Everything a captured step baked in; ``refs`` are the objects named by id()."""
        s = self.s
        opt = s.optimizer
        params = list(s.model.parameters())
        hps = tuple(tuple((k, _hp(v)) for k, v in g.items() if k != "params") for g in opt.param_groups)
        state: list[tuple | None] = []
        for p in params:
            st = opt.state.get(p)
            if st:
                state.append(tuple((k, _hp(v)) for k, v in st.items()))
            else:
                state.append(None)
        key = [
            hill,
            ce_weight,
            bool(s.use_compile),
            self.model_compiled,
            s.model.training,
            s.grad_clip,
            tuple(x.shape),
            x.stride(),
            x.dtype,
            tuple(y.shape),
            y.dtype,
            tuple(idx.shape),
            idx.dtype,
            id(s.model),
            id(opt),
            hps,
            tuple(state),
            tuple(p.data_ptr() for p in params),
            tuple(p.requires_grad for p in params),
            tuple(b.data_ptr() for b in s.model.buffers()),
            alpha.data_ptr(),
            lam.data_ptr(),
        ]
        refs: tuple = (s.model, opt)
        if hill:
            t, pr, w = s.targets, s.projection, s.weights
            assert pr is not None  # fitted before there are targets
            key += [
                id(t),
                id(pr),
                (w.center, w.spread, w.sep, w.point),
                tuple(
                    v.data_ptr()
                    for v in (
                        t.centers,
                        t.spreads,
                        t.class_mask,
                        t.sep_min,
                        t.point_pos,
                        t.point_mask,
                        t.ref_radius,
                        t.metric,
                    )
                ),
                pr.weight.data_ptr(),
                pr.bias.data_ptr(),
                pr.weight.dtype,
                pr.weight.device,
            ]
            refs += (t, pr)
        return tuple(key), refs

    def _side_stream(self) -> Any:
        if self._side is None:
            self._side = torch.cuda.Stream(self.s.device)
        return self._side

    def _warm(self, *args: Any) -> torch.Tensor:
        """An ordinary step on the side stream the capture will use (lazy cuBLAS/cuDNN state is per stream)."""
        side, main = self._side_stream(), torch.cuda.current_stream(self.s.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out = self._body(*args)
        main.wait_stream(side)
        return out

    def _capture(
        self,
        key: tuple,
        refs: tuple,
        fwd: Callable,
        lossfn: Callable,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        hill: bool,
        alpha: torch.Tensor,
        lam: torch.Tensor,
        ce_weight: str,
    ) -> None:
        sx, sy, sidx = x.clone(), y.clone(), idx.clone()  # clone keeps channels_last strides
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._side_stream()):
            out = self._body(fwd, lossfn, sx, sy, sidx, hill, alpha, lam, ce_weight)
        self._captured = _Captured(key, graph, sx, sy, sidx, out, refs)
        self.captures += 1

    def _replay(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        c = self._captured
        assert c is not None  # replayed only after a capture
        c.x.copy_(x)
        c.y.copy_(y)
        c.idx.copy_(idx)
        c.graph.replay()
        return c.out.clone()  # the static output is overwritten by the next replay

    # ---------------------------------------------------------------- entry

    def __call__(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        s = self.s
        hill = s.targets is not None and s.alpha > 0 and s.projection is not None
        alpha = self._scalar("alpha", s.alpha)
        lam = self._scalar("lam", s.lam)
        cw = self.ce_weight
        fwd, lossfn = self._fns()
        if not self._graphs_on():
            return self._body(fwd, lossfn, x, y, idx, hill, alpha, lam, cw)

        key, refs = self._graph_key(hill, x, y, idx, alpha, lam, cw)
        c = self._captured
        if c is not None and c.key == key:
            self._replays += 1
            return self._replay(x, y, idx)
        if key != self._key:
            if c is not None and self._replays < 16:
                # the state changes soon after every capture (an LR schedule, say): capture less eagerly
                self._warm_needed = min(2 * self._warm_needed, 256)
            self._key = key
            self._since_change = 0
            self._captured = None
        if self._since_change < self._warm_needed:
            self._since_change += 1
            return self._warm(fwd, lossfn, x, y, idx, hill, alpha, lam, cw)
        try:
            self._capture(key, refs, fwd, lossfn, x, y, idx, hill, alpha, lam, cw)
        except Exception as e:  # noqa: BLE001 - capture is an optimisation: report it, train on without it
            self._captured = None
            self._graph_error = f"{type(e).__name__}: {e}"
            try:
                torch.cuda.synchronize(s.device)
            except RuntimeError as sync_error:  # the failed capture's own error, already reported above
                self._graph_error += f"; then {sync_error}"
            s.events.emit(
                "log",
                level="warning",
                message=f"CUDA graph capture of the train step failed; training on without it ({self._graph_error})",
            )
            return self._body(fwd, lossfn, x, y, idx, hill, alpha, lam, cw)
        self._replays = 1
        return self._replay(x, y, idx)
