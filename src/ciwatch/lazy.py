"""Lazy package exports: a package's `__init__` names what it offers without importing it.

An eager `from ciwatch.alerting.delivery import DeliveryWorkers` in `alerting/__init__.py`
made `import ciwatch.alerting.rules` (a pure module) load the store, the channels and every
I/O library, and made `import ciwatch.store.alerting` fail on its own (a cycle through the
package `__init__`). With `exports`, a package's public names resolve on first attribute access,
so importing one submodule imports that submodule and what it imports, nothing more.
Type checkers see the names through the `TYPE_CHECKING` imports each package keeps beside it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` resolving each of `names` from its submodule."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
