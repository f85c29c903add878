"""HTTP triggers of the directory: the admin API for tenants, users and companies.

Every route is anonymous to the Functions host because the product checks the bearer token
itself. The tenant is always the caller's ``tid`` claim, never a path or body value, so an id
from another tenant answers 404 like an unknown one. ``admin/...`` routes need the Admin app
role, except ``admin/permissions``, which the ``manageSettings`` workflow also opens. Errors
are JSON bodies naming the field and rule (see ``shared.triggers._http``); HTTP triggers are
never retried.
"""

from typing import Any

import azure.functions as func

from shared.audit.log import Action
from shared.directory.companycsv import parse_companies_csv
from shared.directory.model import DirectoryUser, Tenant
from shared.errors import NotFoundError, ValidationError
from shared.read.views import company_json, company_summary_json
from shared.triggers._http import (
    UnsupportedMediaError,
    caller_of,
    handled,
    json_body,
    json_object,
    json_response,
    query_int,
)
from shared.wiring import services

bp = func.Blueprint()

_ANONYMOUS = func.AuthLevel.ANONYMOUS
_IMPORT_TYPES = "application/json (a list, or an object with a companies list) or text/csv"


@bp.function_name("admin_tenant_put")
@bp.route(route="admin/tenant", methods=["PUT"], auth_level=_ANONYMOUS)
@handled
def admin_tenant_put(req: func.HttpRequest) -> func.HttpResponse:
    """Set up the caller's tenant or replace its settings; answers with the tenant."""
    caller = caller_of(req)
    with services().audit.audited(caller, Action.TENANT_SET, target_id=caller.tenant_id):
        caller.require_admin()
        tenant = services().directory.upsert_tenant(caller.tenant_id, json_object(req))
    return json_response(_tenant_json(tenant))


@bp.function_name("admin_tenant_get")
@bp.route(route="admin/tenant", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def admin_tenant_get(req: func.HttpRequest) -> func.HttpResponse:
    """Return the caller's tenant settings; 404 until the tenant is set up."""
    caller = caller_of(req)
    caller.require_admin()
    tenant = services().directory.get_tenant(caller.tenant_id)
    if tenant is None:
        message = "this tenant is not set up; PUT admin/tenant first"
        raise NotFoundError(message)
    return json_response(_tenant_json(tenant))


@bp.function_name("admin_user_put")
@bp.route(route="admin/users/{user_id}", methods=["PUT"], auth_level=_ANONYMOUS)
@handled
def admin_user_put(req: func.HttpRequest) -> func.HttpResponse:
    """Add a user (by Entra object id) to the caller's tenant or replace the user's profile."""
    caller = caller_of(req)
    user_id = req.route_params["user_id"]
    with services().audit.audited(caller, Action.USER_SET, target_user_id=user_id) as note:
        caller.require_admin()
        user = services().directory.upsert_user(caller.tenant_id, user_id, json_object(req))
        note.target_user_id = user.user_id
    return json_response(_user_json(user))


@bp.function_name("admin_users_list")
@bp.route(route="admin/users", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def admin_users_list(req: func.HttpRequest) -> func.HttpResponse:
    """List every user of the caller's tenant."""
    caller = caller_of(req)
    caller.require_admin()
    users = services().directory.list_users(caller.tenant_id)
    return json_response({"items": [_user_json(user) for user in users]})


@bp.function_name("admin_company_create")
@bp.route(route="admin/companies", methods=["POST"], auth_level=_ANONYMOUS)
@handled
def admin_company_create(req: func.HttpRequest) -> func.HttpResponse:
    """Add one company with a new id; answers 201 with the company."""
    caller = caller_of(req)
    with services().audit.audited(caller, Action.COMPANY_CREATE) as note:
        caller.require_admin()
        company = services().directory.create_company(caller.tenant_id, json_object(req))
        note.target_id = company.company_id
    return json_response(company_json(company), 201)


@bp.function_name("admin_company_put")
@bp.route(route="admin/companies/{company_id}", methods=["PUT"], auth_level=_ANONYMOUS)
@handled
def admin_company_put(req: func.HttpRequest) -> func.HttpResponse:
    """Add a company under the given id or replace it; contacts left out are kept."""
    caller = caller_of(req)
    company_id = req.route_params["company_id"]
    with services().audit.audited(caller, Action.COMPANY_SET, target_id=company_id) as note:
        caller.require_admin()
        body = json_object(req)
        company = services().directory.upsert_company(caller.tenant_id, company_id, body)
        note.target_id = company.company_id
    return json_response(company_json(company))


@bp.function_name("admin_company_delete")
@bp.route(route="admin/companies/{company_id}", methods=["DELETE"], auth_level=_ANONYMOUS)
@handled
def admin_company_delete(req: func.HttpRequest) -> func.HttpResponse:
    """Remove a company and its contacts; answers 204, or 404 for an unknown id."""
    caller = caller_of(req)
    company_id = req.route_params["company_id"]
    with services().audit.audited(caller, Action.COMPANY_DELETE, target_id=company_id):
        caller.require_admin()
        services().directory.delete_company(caller.tenant_id, company_id)
    return func.HttpResponse(status_code=204)


@bp.function_name("admin_companies_list")
@bp.route(route="admin/companies", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def admin_companies_list(req: func.HttpRequest) -> func.HttpResponse:
    """List the caller's companies a page at a time (``pageSize``, ``continuationToken``)."""
    caller = caller_of(req)
    caller.require_admin()
    size = query_int(req, "pageSize", 100, low=1, high=1000)
    token = req.params.get("continuationToken") or None
    companies, next_token = services().directory.list_companies(
        caller.tenant_id, page_size=size, token=token
    )
    items = [company_summary_json(company) for company in companies]
    return json_response({"items": items, "continuationToken": next_token})


@bp.function_name("admin_companies_import")
@bp.route(route="admin/companies/import", methods=["POST"], auth_level=_ANONYMOUS)
@handled
def admin_companies_import(req: func.HttpRequest) -> func.HttpResponse:
    """Create or update many companies from JSON or CSV; answers with the counts.

    The optional ``mode`` query parameter is ``upsert`` (default) or ``create``. Any other
    Content-Type than JSON or CSV answers 415.
    """
    caller = caller_of(req)
    with services().audit.audited(caller, Action.COMPANIES_IMPORT) as note:
        caller.require_admin()
        media = req.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if media not in ("application/json", "text/csv"):
            raise UnsupportedMediaError(field="Content-Type", rule=f"must be {_IMPORT_TYPES}")
        rows = _json_rows(json_body(req)) if media == "application/json" else _csv_rows(req)
        mode = req.params.get("mode") or "upsert"
        result = services().directory.import_companies(caller.tenant_id, rows, mode=mode)
        note.counts = {"created": result.created, "updated": result.updated}
    return json_response({"created": result.created, "updated": result.updated})


def _json_rows(body: Any) -> Any:
    """Accept a bare list of companies or an object holding one under ``companies``."""
    if isinstance(body, dict) and set(body) == {"companies"}:
        return body["companies"]
    if not isinstance(body, list):
        field, rule = "body", "must be a list of companies or an object with a companies list"
        raise ValidationError(field, rule)
    return body


def _csv_rows(req: func.HttpRequest) -> list[dict[str, Any]]:
    try:
        text = req.get_body().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        field = "body"
        raise ValidationError(field, "must be CSV text encoded as UTF-8") from error
    return parse_companies_csv(text)


def _tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.tenant_id,
        "name": tenant.name,
        "ownDomains": list(tenant.own_domains),
        "backfillDays": tenant.backfill_days,
        "sendSizeLimitBytes": tenant.send_size_limit,
        "dailyAutomaticLimit": tenant.daily_automatic_limit,
        "doNotDisturb": tenant.do_not_disturb.as_json() if tenant.do_not_disturb else None,
    }


def _user_json(user: DirectoryUser) -> dict[str, Any]:
    return {
        "id": user.user_id,
        "upn": user.upn,
        "displayName": user.display_name,
        "roles": list(user.roles),
    }


@bp.function_name("admin_permissions_get")
@bp.route(route="admin/permissions", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def admin_permissions_get(req: func.HttpRequest) -> func.HttpResponse:
    """Return the tenant's permission policy, every entry spelled out."""
    caller = caller_of(req)
    return json_response(services().permissions.policy_for(caller).as_json())


@bp.function_name("admin_permissions_put")
@bp.route(route="admin/permissions", methods=["PUT"], auth_level=_ANONYMOUS)
@handled
def admin_permissions_put(req: func.HttpRequest) -> func.HttpResponse:
    """Replace the tenant's permission policy with a checked document."""
    caller = caller_of(req)
    with services().audit.audited(caller, Action.PERMISSIONS_SET) as note:
        policy = services().permissions.set_policy(caller, json_object(req))
        note.counts = {"roles": len(policy.roles)}
    return json_response(policy.as_json())


@bp.function_name("admin_audit_list")
@bp.route(route="admin/audit", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def admin_audit_list(req: func.HttpRequest) -> func.HttpResponse:
    """List the tenant's audit entries, newest first (``userId``, ``action``, paging)."""
    caller = caller_of(req)
    caller.require_admin()
    size = query_int(req, "pageSize", 50, low=1, high=500)
    entries, next_token = services().audit.entries(
        caller.tenant_id,
        user_id=req.params.get("userId") or None,
        action=req.params.get("action") or None,
        size=size,
        token=req.params.get("continuationToken") or None,
    )
    items = [entry.as_json() for entry in entries]
    return json_response({"items": items, "continuationToken": next_token})
