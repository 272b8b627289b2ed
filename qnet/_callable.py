"""Keep ``qnet.lower(...)`` and ``qnet.verify(...)`` callable after their modules are imported.

``qnet.lower`` and ``qnet.verify`` are public functions that live in modules of the same
name. Importing such a module (``from qnet.verify import VerifyReport``) makes Python bind
the *module* as the package attribute, hiding the function. Making the module object itself
callable (forwarding to the function) keeps ``qnet.verify(model, x)`` working either way.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["make_module_callable"]


def make_module_callable(module_name: str, func: Callable[..., Any]) -> None:
    """Make ``sys.modules[module_name]`` forward calls to ``func``."""

    class _CallableModule(types.ModuleType):
        __doc__ = func.__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
