"""HTTP triggers for mail consent and the caller's own connections."""

import azure.functions as func

from shared.audit.log import Action, Outcome
from shared.sync.explain import connection_view
from shared.triggers._http import caller_of, handled, json_object, json_response
from shared.wiring import services

bp = func.Blueprint()


@bp.function_name("consent_start")
@bp.route(route="me/connections/mail", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handled
def consent_start(req: func.HttpRequest) -> func.HttpResponse:
    """Start mail consent for the caller; answers with the URL to open in their browser."""
    caller = caller_of(req)
    url = services().consent.start(caller)
    return json_response({"authorizeUrl": url}, 201)


@bp.function_name("consent_callback")
@bp.route(route="consent/callback", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handled
def consent_callback(req: func.HttpRequest) -> func.HttpResponse:
    """Complete consent from Microsoft's redirect; anonymous, proven by the single-use state."""
    connection = services().consent.complete(dict(req.params))
    services().audit.record(
        tenant_id=connection.tenant_id,
        actor_id=connection.user_id,
        action=Action.CONSENT_GRANTED,
        outcome=Outcome.SUCCEEDED,
        target_user_id=connection.user_id,
        target_id=connection.kind,
    )
    folders = [{"id": f.folder_id, "name": f.name} for f in connection.folders]
    body = {
        "connected": True,
        "kind": connection.kind,
        "state": connection.state,
        "folders": folders,
    }
    return json_response(body)


@bp.function_name("my_connections")
@bp.route(route="me/connections", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handled
def my_connections(req: func.HttpRequest) -> func.HttpResponse:
    """List the caller's connections: state, last round, last error explained in words."""
    caller = caller_of(req)
    connections = services().connections.list_for_user(caller.tenant_id, caller.user_id)
    return json_response({"items": [connection_view(c) for c in connections]})


@bp.function_name("mail_folders")
@bp.route(route="me/mailfolders", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handled
def mail_folders(req: func.HttpRequest) -> func.HttpResponse:
    """List the caller's mail folders, each marked whether it is synced."""
    caller = caller_of(req)
    return json_response({"items": services().consent.list_folders(caller)})


@bp.function_name("choose_mail_folders")
@bp.route(route="me/connections/mail/folders", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@handled
def choose_mail_folders(req: func.HttpRequest) -> func.HttpResponse:
    """Set which of the caller's mail folders are synced."""
    caller = caller_of(req)
    with services().audit.audited(caller, Action.FOLDERS_SET) as note:
        note.target_user_id = caller.user_id
        body = json_object(req)
        connection = services().consent.choose_folders(caller, body.get("folderIds"))
        note.counts = {"folders": len(connection.folders)}
    folders = [{"id": f.folder_id, "name": f.name} for f in connection.folders]
    return json_response({"folders": folders})
