"""Services from an import path: what ``netbus serve`` and ``[services.<name>] module`` name.

A target ``package.module:attr`` (the attribute may be dotted, ``mod:Game.create``) names:

- a `Service` **instance**: served as it is;
- a `Service` **subclass**: created as ``cls(**settings)``;
- a **list or tuple** of instances and subclasses: each as above;
- any other **callable** (a factory): called as ``factory(**settings)``; it returns a
  `Service` or a list of them.

``settings`` is the free-form ``[services.<name>.settings]`` table, so a service's own
configuration keys are its constructor's (or factory's) keyword arguments, and a typo there
is an error naming the key, as everywhere else in the configuration. Settings given to an
instance (which takes none) are an error too, rather than silently unused.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from netbus.config import check_target
from netbus.errors import ConfigError
from netbus.service.base import Service

__all__ = ["build_services", "import_target", "load_services"]

log = logging.getLogger("netbus.serve")


def import_target(target: str) -> object:
    """The object ``package.module:attr`` names.

    Raises:
        ConfigError: the path is malformed, the module cannot be found or fails to import
            (the cause is in the message; its traceback is logged), or has no such attribute.
    """
    try:
        check_target(target)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise ConfigError(
                f"{target}: no module named {exc.name!r} (is the package installed, or "
                "are you in its directory?)"
            ) from None
        log.error("importing %s failed", module_name, exc_info=True)
        raise ConfigError(f"{target}: importing {module_name} failed: {exc}") from None
    except Exception as exc:  # the module's own code raised (syntax error, bad import...)
        log.error("importing %s failed", module_name, exc_info=True)
        raise ConfigError(
            f"{target}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    found: Any = module
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError(f"{target}: {module_name} has no attribute {attr!r}") from None
    return found


def _call(factory: Callable[..., Any], settings: Mapping[str, Any], origin: str) -> Any:
    """``factory(**settings)``, with a clear error when the settings do not fit."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to check against: let the call say
        signature = None
    if signature is not None:
        try:
            signature.bind(**settings)
        except TypeError as exc:
            keys = ", ".join(sorted(settings)) or "none"
            takes = [
                p.name
                for p in signature.parameters.values()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            raise ConfigError(
                f"{origin}: the settings ({keys}) do not fit "
                f"{getattr(factory, '__qualname__', factory)}: {exc} "
                f"(it takes: {', '.join(takes) or 'nothing'})"
            ) from None
    return factory(**settings)


def _is_service_class(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, Service)


def build_services(
    obj: object, *, settings: Mapping[str, Any] | None = None, origin: str = "service"
) -> list[Service]:
    """The services ``obj`` stands for (see the module docstring), built with ``settings``.

    Args:
        origin: names ``obj`` in error messages (the target, or ``services.<name>``).

    Raises:
        ConfigError: ``obj`` is not a service, a service class, a list of them or a factory
            returning them; or ``settings`` do not fit; or nothing takes ``settings``.
    """
    settings = dict(settings or {})
    what = "a Service instance, a Service subclass, a list of them, or a factory returning them"
    if isinstance(obj, Service):
        items: list[object] = [obj]
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    elif _is_service_class(obj) or (callable(obj) and not isinstance(obj, type)):
        items = [obj]
    else:
        raise ConfigError(f"{origin} is {_describe(obj)}; expected {what}")
    if not items:
        raise ConfigError(f"{origin} is an empty list: no service to run")
    if settings and all(isinstance(item, Service) for item in items):
        raise ConfigError(
            f"{origin} is a Service instance, which takes no settings "
            f"({', '.join(sorted(settings))}); point at its class or a factory instead"
        )
    services: list[Service] = []
    for item in items:
        if isinstance(item, Service):
            services.append(item)
        elif _is_service_class(item):
            services.append(_call(item, settings, origin))  # type: ignore[arg-type]
        elif callable(item) and not isinstance(item, type) and len(items) == 1:
            made = _call(item, settings, origin)
            made_items = list(made) if isinstance(made, (list, tuple)) else [made]
            bad = [m for m in made_items if not isinstance(m, Service)]
            if bad or not made_items:
                got = _describe(bad[0]) if bad else "nothing"
                raise ConfigError(f"the factory {origin} returned {got}; expected Service(s)")
            services.extend(made_items)
        else:
            raise ConfigError(f"{origin} holds {_describe(item)}; expected {what}")
    return services


def load_services(target: str, *, settings: Mapping[str, Any] | None = None) -> list[Service]:
    """`import_target` then `build_services`.

    Raises:
        ConfigError: as those two.
    """
    return build_services(import_target(target), settings=settings, origin=target)


def _describe(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__qualname__}, not a Service subclass"
    return f"a value of type {type(obj).__name__} ({obj!r:.60})"
