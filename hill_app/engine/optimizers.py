"""The optimisers a run trains with: torch's SGD, Adam and AdamW, called without importing torch._dynamo.

torch.optim wraps ``step``, ``zero_grad``, ``add_param_group``, ``state_dict`` and ``load_state_dict`` so that
torch.compile does not trace into them; each wrapper imports torch._dynamo on its first call (about 1 s of every
run's start on a CPU, more than four digits epochs). Outside a frame torch.compile traces the wrappers do
nothing else, so these subclasses call torch's own method bodies there, and the wrapped methods when compiling.
The arithmetic and the state dicts are torch's: ``tests/test_optimizers.py`` pins equal trajectories, bit for
bit, and a checkpoint written by either loading into the other.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .config import RunConfig


def _body(method: Callable) -> Callable:
    """The function under torch's decorators (each keeps ``__wrapped__``); the method itself where none is."""
    return inspect.unwrap(method)


class _WithoutDynamo:
    """Mixed in before a torch optimiser class; ``_torch`` names that class."""

    _torch: Any  # the torch.optim class (Any: its methods are called unbound, with this object as self)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if torch.compiler.is_compiling():
            return self._torch.add_param_group(self, param_group)
        return _body(self._torch.add_param_group)(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if torch.compiler.is_compiling():
            return self._torch.zero_grad(self, set_to_none)
        return _body(self._torch.zero_grad)(self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        if torch.compiler.is_compiling():
            return self._torch.state_dict(self)
        return _body(self._torch.state_dict)(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if torch.compiler.is_compiling():
            return self._torch.load_state_dict(self, state_dict)
        return _body(self._torch.load_state_dict)(self, state_dict)

    def step(self, closure: Callable[[], float] | None = None) -> Any:
        if torch.compiler.is_compiling():
            return self._torch.step(self, closure)
        # what torch's step wrapper does outside torch.compile: run the update with grad mode per 'differentiable'
        with torch.set_grad_enabled(bool(self.defaults["differentiable"])):  # type: ignore[attr-defined]
            return _body(self._torch.step)(self, closure)


class SGD(_WithoutDynamo, torch.optim.SGD):
    _torch = torch.optim.SGD


class Adam(_WithoutDynamo, torch.optim.Adam):
    _torch = torch.optim.Adam


class AdamW(_WithoutDynamo, torch.optim.AdamW):
    _torch = torch.optim.AdamW


def torch_class(opt: torch.optim.Optimizer) -> type:
    """The torch.optim class whose arithmetic ``opt`` runs (what the control server reports as its name)."""
    return getattr(type(opt), "_torch", type(opt))


def make_optimizer(
    config: RunConfig, params: Iterable[torch.nn.Parameter], capturable: bool = False
) -> torch.optim.Optimizer:
    """The run's optimiser from its resolved config (``capturable``: Adam's step count on the device, which
    a CUDA-graph capture of the step needs)."""
    lr, momentum, wd = config.lr, config.momentum, config.weight_decay
    assert lr is not None and momentum is not None and wd is not None  # RunConfig.resolved()
    params = list(params)
    if config.optimizer == "sgd":
        return SGD(params, lr=lr, momentum=momentum, weight_decay=wd, nesterov=momentum > 0)
    if config.optimizer == "adam":
        return Adam(params, lr=lr, weight_decay=wd, capturable=capturable)
    return AdamW(params, lr=lr, weight_decay=wd, capturable=capturable)
