"""Import ``function_app.py`` and describe each function the way the real host indexes it.

The app module is imported from the app directory (which goes first on ``sys.path``, as in the
worker), its single ``FunctionApp`` is found, and ``get_functions()`` supplies every function's
name, trigger binding and user callable. ``%NAME%`` expressions in queue names and schedules are
resolved from the app settings. ``AzureWebJobs.<name>.Disabled`` set to ``true`` or ``1`` leaves
a function out, as ``func start`` does.

Known limitations: only HTTP, timer and queue triggers are served, and the only other binding
allowed is the HTTP ``$return`` output; a function declaring any other binding (queue output,
table input, ...) is a start-up error rather than a binding that silently does nothing.
Identity-based connections (``<connection>__queueServiceUri``) are not supported: the setting
named by a queue trigger's ``connection`` must hold a connection string.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import azure.functions as func
from azure.functions.decorators.function_app import Function, FunctionRegister

from devstack.host.errors import HostConfigError
from devstack.host.hostconfig import resolve_expression
from devstack.host.ncrontab import Schedule
from devstack.host.routes import RouteTemplate

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from azure.functions.decorators.core import Trigger

APP_MODULE = "function_app"
_QUEUE_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$")
_TRUE = ("true", "1")


@dataclass(frozen=True, slots=True)
class LoadedFunction:
    """What every trigger kind shares: the function's name and how to call it."""

    name: str
    user_function: Callable[..., Any]
    arg_name: str
    wants_context: bool


@dataclass(frozen=True, slots=True)
class HttpFunction(LoadedFunction):
    """An HTTP-triggered function and its route."""

    route: RouteTemplate
    methods: frozenset[str] | None
    auth_level: str


@dataclass(frozen=True, slots=True)
class TimerFunction(LoadedFunction):
    """A timer-triggered function and its schedule."""

    schedule: Schedule
    run_on_startup: bool


@dataclass(frozen=True, slots=True)
class QueueFunction(LoadedFunction):
    """A queue-triggered function, its resolved queue name and storage connection string."""

    queue_name: str
    connection: str
    connection_string: str


AnyFunction = HttpFunction | TimerFunction | QueueFunction


def import_app(app_dir: Path) -> FunctionRegister:
    """Import ``app_dir/function_app.py`` and return its one ``FunctionApp``.

    Raises:
        HostConfigError: The file is missing, fails to import, or holds no or several apps.
    """
    path = app_dir / f"{APP_MODULE}.py"
    if not path.exists():
        message = f"{path} does not exist; pass the app directory with --app-dir"
        raise HostConfigError(message)
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    spec = importlib.util.spec_from_file_location(APP_MODULE, path)
    if spec is None or spec.loader is None:
        message = f"{path} cannot be imported as a Python module"
        raise HostConfigError(message)
    module = importlib.util.module_from_spec(spec)
    sys.modules[APP_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        message = f"importing {path} failed: {type(error).__name__}: {error}"
        raise HostConfigError(message) from error

    apps = [value for value in vars(module).values() if isinstance(value, FunctionRegister)]
    if len(apps) != 1:
        message = f"{path} must define exactly one func.FunctionApp, found {len(apps)}"
        raise HostConfigError(message)
    return apps[0]


def load_functions(app: FunctionRegister, settings: Mapping[str, str]) -> list[AnyFunction]:
    """Describe every enabled function of ``app``.

    Raises:
        HostConfigError: A function uses an unsupported trigger or binding, or its trigger
            values (route, schedule, queue name, connection) cannot be used.
    """
    try:
        functions = app.get_functions()
    except (ValueError, KeyError) as error:
        message = f"the function app failed indexing: {error}"
        raise HostConfigError(message) from error

    loaded: list[AnyFunction] = []
    for function in functions:
        name = function.get_function_name() or function.get_user_function().__name__
        if settings.get(f"AzureWebJobs.{name}.Disabled", "").lower() in _TRUE:
            continue
        loaded.append(_describe(function, name, settings))
    return loaded


def _describe(function: Function, name: str, settings: Mapping[str, str]) -> AnyFunction:
    trigger = function.get_trigger()
    if trigger is None:
        message = f"function {name!r} has no trigger"
        raise HostConfigError(message)
    _check_bindings(function, trigger, name)
    user_function = function.get_user_function()
    wants_context = _check_parameters(user_function, trigger.name, name)
    common = (name, user_function, trigger.name, wants_context)

    if trigger.type == "httpTrigger":
        return _http(common, trigger)
    if trigger.type == "timerTrigger":
        schedule = resolve_expression(
            str(getattr(trigger, "schedule", "")), settings, where=f"timer function {name!r}"
        )
        run_on_startup = bool(getattr(trigger, "run_on_startup", False))
        return TimerFunction(*common, Schedule.parse(schedule, function_name=name), run_on_startup)
    if trigger.type == "queueTrigger":
        return _queue(common, trigger, settings)
    message = f"function {name!r} uses a {trigger.type} trigger, which this host does not serve"
    raise HostConfigError(message)


def _http(common: tuple[str, Callable[..., Any], str, bool], trigger: Trigger) -> HttpFunction:
    route = RouteTemplate(str(getattr(trigger, "route", None) or common[0]))
    methods = getattr(trigger, "methods", None)
    allowed = frozenset(str(getattr(m, "value", m)).upper() for m in methods) if methods else None
    level = getattr(trigger, "auth_level", None) or func.AuthLevel.FUNCTION
    return HttpFunction(*common, route, allowed, str(getattr(level, "value", level)))


def _queue(
    common: tuple[str, Callable[..., Any], str, bool],
    trigger: Trigger,
    settings: Mapping[str, str],
) -> QueueFunction:
    name = common[0]
    where = f"queue function {name!r}"
    queue_name = resolve_expression(str(getattr(trigger, "queue_name", "")), settings, where=where)
    if _QUEUE_NAME.match(queue_name) is None:
        message = (
            f"{where} listens on {queue_name!r}, which is not a valid queue name "
            "(3-63 lowercase letters, digits and single hyphens)"
        )
        raise HostConfigError(message)
    connection = str(getattr(trigger, "connection", None) or "AzureWebJobsStorage")
    connection_string = settings.get(connection, "")
    if not connection_string:
        message = f"{where} uses connection {connection!r}, but that app setting is not set"
        raise HostConfigError(message)
    return QueueFunction(*common, queue_name, connection, connection_string)


def _check_bindings(function: Function, trigger: Trigger, name: str) -> None:
    for binding in function.get_bindings():
        if binding is trigger or (binding.type == "http" and binding.name == "$return"):
            continue
        message = (
            f"function {name!r} declares a {binding.type} binding {binding.name!r}; "
            "this local host serves only trigger bindings and the HTTP $return output"
        )
        raise HostConfigError(message)


def _check_parameters(user_function: Callable[..., Any], arg_name: str, name: str) -> bool:
    parameters = inspect.signature(user_function).parameters
    if arg_name not in parameters:
        message = f"function {name!r} has no parameter {arg_name!r} for its trigger"
        raise HostConfigError(message)
    unknown = set(parameters) - {arg_name, "context"}
    if unknown:
        message = f"function {name!r} has parameters {sorted(unknown)} bound to nothing"
        raise HostConfigError(message)
    return "context" in parameters
