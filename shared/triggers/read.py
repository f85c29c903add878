"""HTTP triggers of the read API: companies, their emails, one email, the shared inbox.

Every answer passes through the caller's permissions (``shared.read.service``): a company
outside their portfolio answers 404 like an unknown one, and hidden fields are absent.
"""

import azure.functions as func

from shared.triggers._http import caller_of, handled, json_response, query_int
from shared.wiring import services

bp = func.Blueprint()

_ANONYMOUS = func.AuthLevel.ANONYMOUS


@bp.function_name("companies_list")
@bp.route(route="companies", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def companies_list(req: func.HttpRequest) -> func.HttpResponse:
    """List the companies of the caller's portfolio, paged with a continuation token."""
    caller = caller_of(req)
    size = query_int(req, "pageSize", 100, low=1, high=1000)
    token = req.params.get("continuationToken") or None
    return json_response(services().reader.companies(caller, size=size, token=token))


@bp.function_name("company_get")
@bp.route(route="companies/{company_id}", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def company_get(req: func.HttpRequest) -> func.HttpResponse:
    """Return one company of the caller's portfolio with the fields they may see."""
    caller = caller_of(req)
    return json_response(services().reader.company(caller, req.route_params["company_id"]))


@bp.function_name("company_emails")
@bp.route(route="companies/{company_id}/emails", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def company_emails(req: func.HttpRequest) -> func.HttpResponse:
    """List a company's stored emails, newest first, paged with a continuation token."""
    caller = caller_of(req)
    size = query_int(req, "pageSize", 25, low=1, high=100)
    token = req.params.get("continuationToken") or None
    page = services().reader.company_emails(
        caller, req.route_params["company_id"], size=size, token=token
    )
    return json_response(page)


@bp.function_name("shared_inbox")
@bp.route(route="inbox", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def shared_inbox(req: func.HttpRequest) -> func.HttpResponse:
    """List every synced email of the caller's portfolio, newest first (``sharedInbox``)."""
    caller = caller_of(req)
    size = query_int(req, "pageSize", 25, low=1, high=100)
    token = req.params.get("continuationToken") or None
    return json_response(services().reader.shared_inbox(caller, size=size, token=token))


@bp.function_name("email_detail")
@bp.route(route="emails/{email_id}", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def email_detail(req: func.HttpRequest) -> func.HttpResponse:
    """Return one stored email with its body."""
    caller = caller_of(req)
    return json_response(services().reader.email(caller, req.route_params["email_id"]))


@bp.function_name("my_permissions")
@bp.route(route="me/permissions", methods=["GET"], auth_level=_ANONYMOUS)
@handled
def my_permissions(req: func.HttpRequest) -> func.HttpResponse:
    """Return what the caller may connect, see and do."""
    caller = caller_of(req)
    return json_response(services().permissions.effective(caller))
