"""Health endpoint: anonymous, answers without touching any dependency."""

import azure.functions as func

from shared.triggers._http import json_response

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Report that the function app is up."""
    return json_response({"status": "ok"})
