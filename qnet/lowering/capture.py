"""Capture: run the model once and record unit-module calls and torch functions on them.

A *unit* is a module whose class has a registered lowering handler, or a leaf module;
sub-modules of a unit are internal to it. Forward hooks record unit calls; a
:class:`~torch.overrides.TorchFunctionMode` records torch functions called outside units when
one of their arguments is a tensor produced by an earlier record. Records are in execution
order, which is a topological order.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

from qnet.lowering.context import LOWERERS, Call

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    from brevitas.quant_tensor import QuantTensor
    from torch import nn
    from torch.overrides import TorchFunctionMode

__all__ = ["Recorder", "flat_objects", "has_tensor"]


def flat_objects(obj: Any) -> Iterator[Any]:
    if isinstance(obj, QuantTensor | torch.Tensor):
        yield obj
    elif isinstance(obj, tuple | list):
        for item in obj:
            yield from flat_objects(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from flat_objects(item)


def has_tensor(obj: Any) -> bool:
    return any(True for _ in flat_objects(obj))


class Recorder(TorchFunctionMode):
    """Records unit-module calls (via hooks) and torch functions on known tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.records: list[Call] = []
        self.depth = 0  # number of unit modules on the stack
        self.stack: list[str] = []
        self.known: set[int] = set()
        self.keep: list[Any] = []
        self.counts: dict[str, int] = {}
        self.handles: list[Any] = []
        units: set[int] = set()
        inside_unit: set[int] = set()
        for path, module in model.named_modules():
            if id(module) in inside_unit:
                continue
            is_unit = type(module) in LOWERERS or not any(True for _ in module.children())
            if is_unit and module is not model or (is_unit and type(module) in LOWERERS):
                units.add(id(module))
                for sub in module.modules():
                    if sub is not module:
                        inside_unit.add(id(sub))
            if id(module) in inside_unit:
                continue
            self.handles.append(
                module.register_forward_pre_hook(
                    self._pre(path, id(module) in units), with_kwargs=True
                )
            )
            self.handles.append(
                module.register_forward_hook(
                    self._post(path, id(module) in units), with_kwargs=True
                )
            )
        self._pending: list[tuple[Any, Any]] = []

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def mark_known(self, obj: Any) -> None:
        for item in flat_objects(obj):
            self.keep.append(item)
            self.known.add(id(item))
            if isinstance(item, QuantTensor):
                self.keep.append(item.value)
                self.known.add(id(item.value))

    def is_known(self, obj: Any) -> bool:
        return any(
            id(item) in self.known
            or (isinstance(item, QuantTensor) and id(item.value) in self.known)
            for item in flat_objects(obj)
        )

    def _pre(self, path: str, unit: bool) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self.stack.append(path)
            if unit:
                self.depth += 1
                self._pending.append((args, kwargs))

        return hook

    def _post(self, path: str, unit: bool) -> Callable[..., None]:
        def hook(
            module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
        ) -> None:
            self.stack.pop()
            if unit:
                self.depth -= 1
                pre_args, pre_kwargs = self._pending.pop()
                if self.depth == 0:
                    self.records.append(
                        Call(path, module, tuple(pre_args), dict(pre_kwargs), output)
                    )
                    self.mark_known(output)

        return hook

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0 and has_tensor(out) and self.is_known((args, kwargs)):
            fname = getattr(func, "__name__", str(func))
            parent = self.stack[-1] if self.stack else ""
            key = f"{parent}:{fname}"
            n = self.counts.get(key, 0)
            self.counts[key] = n + 1
            self.records.append(Call(f"{key}#{n}", func, tuple(args), dict(kwargs), out))
            self.mark_known(out)
        return out
