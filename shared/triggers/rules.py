"""HTTP triggers of blocking rules: tenant rules, groups and switches, user rules, dry run, explain.

``admin/rules...`` routes manage the tenant scope and need the Admin app role or a role with the
``manageSettings`` workflow; ``me/rules...``
routes manage the caller's own mailbox rules and are open to every registered user of the
tenant. The tenant and user always come from the bearer token. Errors are JSON bodies naming
the field and rule (see ``shared.triggers._http``); HTTP triggers are never retried.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import azure.functions as func

from shared.access.auth import Caller
from shared.access.permissions import Portfolio, Workflow
from shared.audit.log import Action, AuditNote
from shared.triggers._http import caller_of, handled, json_body, json_object, json_response
from shared.wiring import services

bp = func.Blueprint()

_ANONYMOUS = func.AuthLevel.ANONYMOUS


def _admin(req: func.HttpRequest) -> Caller:
    """Return the caller when allowed to manage the tenant's settings."""
    caller = caller_of(req)
    services().permissions.require_workflow(caller, Workflow.MANAGE_SETTINGS)
    return caller


def _member(req: func.HttpRequest) -> Caller:
    """Return the caller when an admin or a registered user of the tenant."""
    caller = caller_of(req)
    services().directory.require_member(caller)
    return caller


@contextmanager
def _tenant_change(
    req: func.HttpRequest, action: Action, target_id: str | None = None
) -> Iterator[tuple[Caller, AuditNote]]:
    """Authenticate, audit, then check the caller may manage the tenant's settings."""
    caller = caller_of(req)
    with services().audit.audited(caller, action, target_id=target_id) as note:
        services().permissions.require_workflow(caller, Workflow.MANAGE_SETTINGS)
        yield caller, note


@contextmanager
def _own_change(
    req: func.HttpRequest, action: Action, target_id: str | None = None
) -> Iterator[tuple[Caller, AuditNote]]:
    """Authenticate, audit, then check the caller is a user of the tenant."""
    caller = caller_of(req)
    with services().audit.audited(caller, action, target_id=target_id) as note:
        services().directory.require_member(caller)
        note.target_user_id = caller.user_id
        yield caller, note


@bp.function_name("admin_rules_list")
@bp.route(route="admin/rules", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def admin_rules_list(req: func.HttpRequest) -> func.HttpResponse:
    """List the tenant's blocking rules, oldest first."""
    caller = _admin(req)
    return json_response({"items": services().rules.list_rules(caller.tenant_id, None)})


@bp.function_name("admin_rule_create")
@bp.route(route="admin/rules", methods=["POST"], auth_level=_ANONYMOUS)
@handled
def admin_rule_create(req: func.HttpRequest) -> func.HttpResponse:
    """Add a tenant blocking rule; answers 201 with the rule and its new id."""
    with _tenant_change(req, Action.TENANT_RULE_CREATE) as (caller, note):
        rule = services().rules.create_rule(caller.tenant_id, None, json_body(req))
        note.target_id = str(rule.get("id"))
    return json_response(rule, 201)


@bp.function_name("admin_rule_get")
@bp.route(route="admin/rules/{rule_id}", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def admin_rule_get(req: func.HttpRequest) -> func.HttpResponse:
    """Return one tenant rule."""
    caller = _admin(req)
    rule_id = req.route_params["rule_id"]
    return json_response(services().rules.get_rule(caller.tenant_id, None, rule_id))


@bp.function_name("admin_rule_put")
@bp.route(route="admin/rules/{rule_id}", methods=["PUT"], auth_level=_ANONYMOUS)
@handled
def admin_rule_put(req: func.HttpRequest) -> func.HttpResponse:
    """Replace a tenant rule's definition."""
    rule_id = req.route_params["rule_id"]
    with _tenant_change(req, Action.TENANT_RULE_SET, rule_id) as (caller, _):
        rule = services().rules.replace_rule(caller.tenant_id, None, rule_id, json_body(req))
    return json_response(rule)


@bp.function_name("admin_rule_delete")
@bp.route(route="admin/rules/{rule_id}", methods=["DELETE"], auth_level=_ANONYMOUS)
@handled
def admin_rule_delete(req: func.HttpRequest) -> func.HttpResponse:
    """Delete a tenant rule; answers 204."""
    rule_id = req.route_params["rule_id"]
    with _tenant_change(req, Action.TENANT_RULE_DELETE, rule_id) as (caller, _):
        services().rules.delete_rule(caller.tenant_id, None, rule_id)
    return func.HttpResponse(status_code=204)


@bp.function_name("admin_rule_switches_get")
@bp.route(route="admin/rules/switches", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def admin_rule_switches_get(req: func.HttpRequest) -> func.HttpResponse:
    """Return the tenant's built-in blocking switches."""
    caller = _admin(req)
    return json_response(services().rules.get_switches(caller.tenant_id))


@bp.function_name("admin_rule_switches_put")
@bp.route(route="admin/rules/switches", methods=["PUT"], auth_level=_ANONYMOUS)
@handled
def admin_rule_switches_put(req: func.HttpRequest) -> func.HttpResponse:
    """Replace the tenant's switches; answers with them."""
    with _tenant_change(req, Action.SWITCHES_SET) as (caller, _):
        switches = services().rules.put_switches(caller.tenant_id, json_body(req))
    return json_response(switches)


@bp.function_name("admin_rule_dry_run")
@bp.route(route="admin/rules/dryrun", methods=["POST"], auth_level=_ANONYMOUS)
@handled
def admin_rule_dry_run(req: func.HttpRequest) -> func.HttpResponse:
    """Decide a posted Graph-shaped message against posted or saved rules; stores nothing."""
    caller = _admin(req)
    view = services().permissions.view_for(caller)
    portfolio = None
    if view.portfolio is Portfolio.OWNED:
        owned = services().directory.owned_company_ids(caller.tenant_id, caller.user_id)
        portfolio = frozenset(owned)
    body = json_object(req)
    return json_response(services().rules.dry_run(caller.tenant_id, body, portfolio=portfolio))


@bp.function_name("admin_rule_groups_list")
@bp.route(route="admin/rules/groups", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def admin_rule_groups_list(req: func.HttpRequest) -> func.HttpResponse:
    """List the tenant's named address groups."""
    caller = _admin(req)
    return json_response({"items": services().rules.list_groups(caller.tenant_id)})


@bp.function_name("admin_rule_group_get")
@bp.route(route="admin/rules/groups/{name}", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def admin_rule_group_get(req: func.HttpRequest) -> func.HttpResponse:
    """Return one address group."""
    caller = _admin(req)
    return json_response(services().rules.get_group(caller.tenant_id, req.route_params["name"]))


@bp.function_name("admin_rule_group_put")
@bp.route(route="admin/rules/groups/{name}", methods=["PUT"], auth_level=_ANONYMOUS)
@handled
def admin_rule_group_put(req: func.HttpRequest) -> func.HttpResponse:
    """Create or replace an address group."""
    name = req.route_params["name"]
    with _tenant_change(req, Action.GROUP_SET, name) as (caller, _):
        group = services().rules.put_group(caller.tenant_id, name, json_body(req))
    return json_response(group)


@bp.function_name("admin_rule_group_delete")
@bp.route(route="admin/rules/groups/{name}", methods=["DELETE"], auth_level=_ANONYMOUS)
@handled
def admin_rule_group_delete(req: func.HttpRequest) -> func.HttpResponse:
    """Delete an address group no tenant rule names; answers 204 (409 while one does)."""
    name = req.route_params["name"]
    with _tenant_change(req, Action.GROUP_DELETE, name) as (caller, _):
        services().rules.delete_group(caller.tenant_id, name)
    return func.HttpResponse(status_code=204)


@bp.function_name("me_rules_list")
@bp.route(route="me/rules", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def me_rules_list(req: func.HttpRequest) -> func.HttpResponse:
    """List the caller's own blocking rules."""
    caller = _member(req)
    items = services().rules.list_rules(caller.tenant_id, caller.user_id)
    return json_response({"items": items})


@bp.function_name("me_rule_create")
@bp.route(route="me/rules", methods=["POST"], auth_level=_ANONYMOUS)
@handled
def me_rule_create(req: func.HttpRequest) -> func.HttpResponse:
    """Add a blocking rule for the caller's own mailbox; answers 201."""
    with _own_change(req, Action.USER_RULE_CREATE) as (caller, note):
        rule = services().rules.create_rule(caller.tenant_id, caller.user_id, json_body(req))
        note.target_id = str(rule.get("id"))
    return json_response(rule, 201)


@bp.function_name("me_rule_explain")
@bp.route(route="me/rules/explain", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def me_rule_explain(req: func.HttpRequest) -> func.HttpResponse:
    """Tell why one message of the caller's mailbox was kept or dropped.

    Query: ``messageId`` (the Graph immutable id) or ``internetMessageId``.
    """
    caller = _member(req)
    answer = services().rules.explain(
        caller.tenant_id,
        caller.user_id,
        message_id=req.params.get("messageId") or None,
        internet_id=req.params.get("internetMessageId") or None,
    )
    return json_response(answer)


@bp.function_name("me_rule_get")
@bp.route(route="me/rules/{rule_id}", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def me_rule_get(req: func.HttpRequest) -> func.HttpResponse:
    """Return one of the caller's rules."""
    caller = _member(req)
    rule_id = req.route_params["rule_id"]
    return json_response(services().rules.get_rule(caller.tenant_id, caller.user_id, rule_id))


@bp.function_name("me_rule_put")
@bp.route(route="me/rules/{rule_id}", methods=["PUT"], auth_level=_ANONYMOUS)
@handled
def me_rule_put(req: func.HttpRequest) -> func.HttpResponse:
    """Replace one of the caller's rules."""
    rule_id = req.route_params["rule_id"]
    with _own_change(req, Action.USER_RULE_SET, rule_id) as (caller, _):
        body = json_body(req)
        rule = services().rules.replace_rule(caller.tenant_id, caller.user_id, rule_id, body)
    return json_response(rule)


@bp.function_name("me_rule_delete")
@bp.route(route="me/rules/{rule_id}", methods=["DELETE"], auth_level=_ANONYMOUS)
@handled
def me_rule_delete(req: func.HttpRequest) -> func.HttpResponse:
    """Delete one of the caller's rules; answers 204."""
    rule_id = req.route_params["rule_id"]
    with _own_change(req, Action.USER_RULE_DELETE, rule_id) as (caller, _):
        services().rules.delete_rule(caller.tenant_id, caller.user_id, rule_id)
    return func.HttpResponse(status_code=204)
