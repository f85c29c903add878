"""HTTP triggers of the read API."""

import azure.functions as func

from shared.triggers._http import caller_of, handled, json_response, query_int
from shared.wiring import services

bp = func.Blueprint()


@bp.function_name("company_emails")
@bp.route(
    route="companies/{company_id}/emails", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS
)
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


@bp.function_name("email_detail")
@bp.route(route="emails/{email_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handled
def email_detail(req: func.HttpRequest) -> func.HttpResponse:
    """Return one stored email with its body."""
    caller = caller_of(req)
    return json_response(services().reader.email(caller, req.route_params["email_id"]))
