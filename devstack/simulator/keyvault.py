"""The Key Vault secrets REST surface, served at the root of its own HTTPS port like a vault host.

Known limitations: list operations return everything in one page (``maxresults`` is ignored),
``api-version`` is accepted whatever its value, and there are no access policies or RBAC: any
token for ``https://vault.azure.net`` from the vault's tenant may do anything.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from devstack.simulator.tokens import VAULT_AUDIENCE, TokenInvalidError
from devstack.simulator.vaultstore import RECOVERABLE_DAYS, VaultError
from devstack.simulator.web import Handler, Service, json_body, json_response

if TYPE_CHECKING:
    from devstack.simulator.vaultstore import Secret, SecretVersion
    from devstack.simulator.web import Call

_DAY = 24 * 3600


def vault_error(
    call: Call, status: int, code: str, message: str, inner: str | None = None
) -> Response:
    """Return an error in Key Vault's JSON shape."""
    error: dict[str, Any] = {"code": code, "message": message}
    if inner is not None:
        error["innererror"] = {"code": inner}
    return json_response({"error": error}, status, {"x-ms-request-id": call.request_id})


def _challenge(call: Call, message: str) -> Response:
    response = vault_error(call, 401, "Unauthorized", message)
    authority = f"{call.state.urls.base_url}/{call.state.vault_tenant_id}"
    response.headers["WWW-Authenticate"] = (
        f'Bearer authorization="{authority}", resource="{VAULT_AUDIENCE}"'
    )
    return response


def authenticate(call: Call) -> Response | None:
    """Check the bearer token; answer the Key Vault challenge when it is missing or not valid."""
    scheme, _, token = call.request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _challenge(call, "AKV10000: Request is missing a Bearer or PoP token.")
    audience = (VAULT_AUDIENCE, f"{VAULT_AUDIENCE}/")
    try:
        claims = call.state.key.verify(token.strip(), audience=audience, now=call.state.clock.now())
    except TokenInvalidError as exc:
        # The product's credential caches its token by the real clock, while a test may have
        # moved the simulated one past the token's expiry: a token valid by the real clock is
        # still good, as it would be for a vault that never saw the clock move.
        try:
            claims = call.state.key.verify(token.strip(), audience=audience, now=time.time())
        except TokenInvalidError:
            return _challenge(call, f"AKV10022: Invalid audience or token: {exc}")
    if claims.get("tid") != call.state.vault_tenant_id:
        return _challenge(call, "AKV10032: Invalid issuer; the token is from another tenant.")
    call.claims = claims
    call.principal = str(claims.get("oid", ""))
    return None


def _attributes(version: SecretVersion) -> dict[str, Any]:
    return {
        "enabled": version.enabled,
        "created": version.created,
        "updated": version.created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": RECOVERABLE_DAYS,
    }


def _item(call: Call, secret: Secret, version: SecretVersion, *, versioned: bool) -> dict[str, Any]:
    base = f"{call.state.urls.vault_url}/secrets/{secret.name}"
    item: dict[str, Any] = {
        "id": f"{base}/{version.version}" if versioned else base,
        "attributes": _attributes(version),
        "tags": dict(version.tags),
    }
    if version.content_type is not None:
        item["contentType"] = version.content_type
    return item


def _bundle(call: Call, secret: Secret, version: SecretVersion) -> dict[str, Any]:
    return {"value": version.value, **_item(call, secret, version, versioned=True)}


def _deleted_fields(call: Call, secret: Secret) -> dict[str, Any]:
    deleted = secret.deleted or 0
    return {
        "recoveryId": f"{call.state.urls.vault_url}/deletedsecrets/{secret.name}",
        "deletedDate": deleted,
        "scheduledPurgeDate": deleted + RECOVERABLE_DAYS * _DAY,
    }


def _now(call: Call) -> int:
    return int(call.state.clock.now())


def set_secret(call: Call) -> Response:
    """Serve ``PUT /secrets/{name}``: add a version."""
    body = json_body(call)
    if not isinstance(body.get("value"), str):
        return vault_error(call, 400, "BadParameter", "The secret value is missing.")
    with call.state.lock:
        secret, version = call.state.vault.set(
            call.args["name"],
            body["value"],
            _now(call),
            content_type=body.get("contentType"),
            tags=body.get("tags"),
        )
        return json_response(_bundle(call, secret, version))


def get_secret(call: Call) -> Response:
    """Serve ``GET /secrets/{name}`` and ``GET /secrets/{name}/{version}``."""
    with call.state.lock:
        secret, version = call.state.vault.get(call.args["name"], call.args.get("version"))
        return json_response(_bundle(call, secret, version))


def list_versions(call: Call) -> Response:
    """Serve ``GET /secrets/{name}/versions``."""
    with call.state.lock:
        secret, _ = call.state.vault.get(call.args["name"])
        items = [_item(call, secret, v, versioned=True) for v in secret.versions]
    return json_response({"value": items, "nextLink": None})


def list_secrets(call: Call) -> Response:
    """Serve ``GET /secrets``."""
    with call.state.lock:
        items = [_item(call, s, s.latest, versioned=False) for s in call.state.vault.live()]
    return json_response({"value": items, "nextLink": None})


def delete_secret(call: Call) -> Response:
    """Serve ``DELETE /secrets/{name}``: soft delete."""
    with call.state.lock:
        secret = call.state.vault.delete(call.args["name"], _now(call))
        return json_response(
            {**_bundle(call, secret, secret.latest), **_deleted_fields(call, secret)}
        )


def get_deleted(call: Call) -> Response:
    """Serve ``GET /deletedsecrets/{name}``."""
    with call.state.lock:
        secret = call.state.vault.get_deleted(call.args["name"])
        return json_response(
            {**_bundle(call, secret, secret.latest), **_deleted_fields(call, secret)}
        )


def list_deleted(call: Call) -> Response:
    """Serve ``GET /deletedsecrets``."""
    with call.state.lock:
        items = [
            {**_item(call, s, s.latest, versioned=False), **_deleted_fields(call, s)}
            for s in call.state.vault.deleted()
        ]
    return json_response({"value": items, "nextLink": None})


def purge_deleted(call: Call) -> Response:
    """Serve ``DELETE /deletedsecrets/{name}``: purge."""
    with call.state.lock:
        call.state.vault.purge(call.args["name"], call.state.clock.now())
    return Response(status=204)


def recover_deleted(call: Call) -> Response:
    """Serve ``POST /deletedsecrets/{name}/recover``."""
    with call.state.lock:
        secret = call.state.vault.recover(call.args["name"])
        return json_response(_bundle(call, secret, secret.latest))


def _guarded(handler: Handler) -> Handler:
    def run(call: Call) -> Response:
        try:
            return handler(call)
        except VaultError as exc:
            return vault_error(call, exc.status, exc.code, exc.message, exc.inner)

    return run


def service() -> Service:
    """Return the Key Vault surface."""
    routes = [
        ("/secrets", "list_secrets", "GET", list_secrets),
        ("/secrets/<name>", "set_secret", "PUT", set_secret),
        ("/secrets/<name>", "get_secret", "GET", get_secret),
        ("/secrets/<name>/", "get_secret_slash", "GET", get_secret),
        ("/secrets/<name>", "delete_secret", "DELETE", delete_secret),
        ("/secrets/<name>/versions", "list_versions", "GET", list_versions),
        ("/secrets/<name>/<version>", "get_version", "GET", get_secret),
        ("/deletedsecrets", "list_deleted", "GET", list_deleted),
        ("/deletedsecrets/<name>", "get_deleted", "GET", get_deleted),
        ("/deletedsecrets/<name>", "purge_deleted", "DELETE", purge_deleted),
        ("/deletedsecrets/<name>/recover", "recover_deleted", "POST", recover_deleted),
    ]
    rules = [
        Rule(path, endpoint=endpoint, methods=[method]) for path, endpoint, method, _ in routes
    ]
    return Service(
        name="vault",
        url_map=Map(rules, strict_slashes=False, merge_slashes=False),
        handlers={endpoint: _guarded(handler) for _, endpoint, _, handler in routes},
        prepare=authenticate,
        error=vault_error,
    )
