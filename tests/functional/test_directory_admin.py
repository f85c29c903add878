"""Functional tests of the admin HTTP triggers, invoked directly against Azurite."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import azure.functions as func
import pytest
from azure.data.tables import TableServiceClient

from shared.access.auth import Caller
from shared.access.permissions import PermissionService
from shared.adapters.tables import TableEntityStore
from shared.audit.log import AuditLog
from shared.directory.service import DirectoryService
from shared.errors import AuthenticationError
from shared.read.service import ReadService
from shared.triggers import admin, read

if TYPE_CHECKING:
    from devstack.azurite import Azurite

TENANT_BODY = {"name": "Vendor", "ownDomains": ["vendor.example"]}


@dataclass
class FakeServices:
    """The collaborators the admin triggers and the company read use."""

    directory: DirectoryService
    permissions: PermissionService
    reader: ReadService
    audit: AuditLog


@dataclass
class Session:
    """Calls the admin triggers as a chosen caller of one tenant."""

    tenant_id: str
    caller: Caller | None = None

    def as_admin(self) -> Session:
        """Act as an admin of the tenant from now on."""
        self.caller = Caller(self.tenant_id, str(uuid.uuid4()), frozenset({"Admin"}), "admin")
        return self

    def as_member(self) -> Session:
        """Register a plain user of the tenant (set up first if needed), then act as that user."""
        user_id = str(uuid.uuid4())
        self.as_admin()
        if self.call(admin.admin_tenant_get, "GET").status_code == 404:
            self.call(admin.admin_tenant_put, "PUT", body=TENANT_BODY)
        registered = self.call(
            admin.admin_user_put,
            "PUT",
            body={"upn": "member@vendor.example"},
            route={"user_id": user_id},
        )
        assert registered.status_code in {200, 201}
        self.caller = Caller(self.tenant_id, user_id, frozenset(), "member")
        return self

    def call(
        self,
        function: Any,
        method: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        route: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> func.HttpResponse:
        """Invoke a trigger's user function with a constructed request."""
        data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
        request = func.HttpRequest(
            method,
            "http://localhost/api/admin",
            headers={"Content-Type": content_type},
            params=params or {},
            route_params=route or {},
            body=data,
        )
        return function.build().get_user_function()(request)


def _json(response: func.HttpResponse) -> Any:
    """The JSON body of a response."""
    return json.loads(response.get_body())


@pytest.fixture(scope="module")
def tables(azurite: Azurite) -> TableEntityStore:
    """Table Storage on the session's Azurite, every table created."""
    store = TableEntityStore(TableServiceClient.from_connection_string(azurite.connection_string))
    store.ensure_tables()
    return store


@pytest.fixture(scope="module")
def directory(tables: TableEntityStore) -> DirectoryService:
    """A directory service on the session's Azurite."""
    return DirectoryService(tables)


@pytest.fixture
def session(
    tables: TableEntityStore, directory: DirectoryService, monkeypatch: pytest.MonkeyPatch
) -> Session:
    """A fresh tenant id whose callers the triggers see, with services backed by Azurite."""
    current = Session(str(uuid.uuid4()))

    def caller_of(_req: func.HttpRequest) -> Caller:
        if current.caller is None:
            raise AuthenticationError("Authorization header with a Bearer token is required")
        return current.caller

    # The company read needs no email store; the triggers here never list emails.
    permissions = PermissionService(tables, directory)
    reader = ReadService(directory, None, permissions)  # type: ignore[arg-type]
    fakes = FakeServices(directory, permissions, reader, AuditLog(tables))
    for module in (admin, read):
        monkeypatch.setattr(module, "caller_of", caller_of)
        monkeypatch.setattr(module, "services", lambda: fakes)
    return current


@pytest.fixture
def admin_session(session: Session) -> Session:
    """An admin of a tenant that is already set up."""
    session.as_admin()
    response = session.call(admin.admin_tenant_put, "PUT", body=TENANT_BODY)
    assert response.status_code == 200
    return session


def test_admin_tenant_put_then_get_round_trips(session: Session):
    """An admin sets up the tenant from the token's tid and reads it back."""
    # GIVEN an admin of a tenant that is not set up
    session.as_admin()
    before = session.call(admin.admin_tenant_get, "GET")

    # WHEN the admin sets it up
    put = session.call(admin.admin_tenant_put, "PUT", body={**TENANT_BODY, "backfillDays": 0})
    got = session.call(admin.admin_tenant_get, "GET")

    # THEN it was 404 before and reads back as written after
    assert before.status_code == 404
    assert put.status_code == 200
    expected = {"id": session.tenant_id, "name": "Vendor", "ownDomains": ["vendor.example"]}
    sending = {
        "sendSizeLimitBytes": 2 * 1024 * 1024,
        "dailyAutomaticLimit": 200,
        "doNotDisturb": None,
    }
    assert _json(got) == {**expected, "backfillDays": 0, **sending}


def test_admin_routes_refuse_non_admins_and_anonymous(session: Session):
    """A plain user gets 403 and a request without a caller gets 401 on admin routes."""
    # GIVEN no caller, then a plain user
    anonymous = session.call(admin.admin_tenant_put, "PUT", body=TENANT_BODY)
    session.as_member()

    # WHEN the plain user calls admin routes
    put = session.call(admin.admin_tenant_put, "PUT", body=TENANT_BODY)
    listed = session.call(admin.admin_companies_list, "GET")

    # THEN they are refused
    assert anonymous.status_code == 401
    assert (put.status_code, listed.status_code) == (403, 403)


def test_admin_user_put_names_the_bad_field(admin_session: Session):
    """Bad user input answers 400 with the field and rule; a good one is listed."""
    # GIVEN a user body with a bad role, a non-GUID user id, and a good body
    oid = str(uuid.uuid4())
    bad_role = {"upn": "jane@vendor.example", "roles": [""]}

    # WHEN each is PUT
    bad = admin_session.call(admin.admin_user_put, "PUT", body=bad_role, route={"user_id": oid})
    bad_id = admin_session.call(
        admin.admin_user_put, "PUT", body={"upn": "a@vendor.example"}, route={"user_id": "x"}
    )
    good = admin_session.call(
        admin.admin_user_put,
        "PUT",
        body={"upn": "jane@vendor.example", "roles": ["CSM"]},
        route={"user_id": oid},
    )
    listed = admin_session.call(admin.admin_users_list, "GET")

    # THEN the bad ones are 400 naming the field, and the good one is listed
    assert (bad.status_code, _json(bad)["error"]["field"]) == (400, "roles[0]")
    assert (bad_id.status_code, _json(bad_id)["error"]["field"]) == (400, "user_id")
    assert good.status_code == 200
    assert _json(listed)["items"] == [
        {"id": oid, "upn": "jane@vendor.example", "displayName": "", "roles": ["CSM"]}
    ]


def test_admin_users_before_tenant_setup_is_not_found(session: Session):
    """Users cannot be added to a tenant that is not set up."""
    # GIVEN an admin of a tenant that is not set up
    session.as_admin()

    # WHEN a user is added
    response = session.call(
        admin.admin_user_put,
        "PUT",
        body={"upn": "a@vendor.example"},
        route={"user_id": str(uuid.uuid4())},
    )

    # THEN it is 404 saying so
    assert response.status_code == 404
    assert "not set up" in _json(response)["error"]["message"]


def test_admin_company_lifecycle(admin_session: Session):
    """A company is created (201), read by a plain user, replaced, listed and deleted (204)."""
    # GIVEN an admin creating a company
    body = {"name": "Acme", "domains": ["acme.example"], "contacts": ["jane@acme.example"]}
    created = admin_session.call(admin.admin_company_create, "POST", body=body)
    company_id = _json(created)["id"]
    route = {"company_id": company_id}

    # WHEN it is replaced, read by a plain user, listed, deleted and read again
    replaced = admin_session.call(
        admin.admin_company_put, "PUT", body={**_json(created), "name": "Acme Inc"}, route=route
    )
    listed = admin_session.call(admin.admin_companies_list, "GET", params={"pageSize": "10"})
    admin_session.as_member()
    fetched = admin_session.call(read.company_get, "GET", route=route)
    admin_session.as_admin()
    deleted = admin_session.call(admin.admin_company_delete, "DELETE", route=route)
    gone = admin_session.call(read.company_get, "GET", route=route)

    # THEN each step answers as the API promises
    assert created.status_code == 201
    assert replaced.status_code == 200
    assert _json(fetched) == {
        "id": company_id,
        "name": "Acme Inc",
        "domains": ["acme.example"],
        "externalId": None,
        "contacts": [{"email": "jane@acme.example", "name": ""}],
        "ownerIds": [],
        "properties": {},
    }
    assert _json(listed)["items"][0]["contactCount"] == 1
    assert _json(listed)["continuationToken"] is None
    assert deleted.status_code == 204
    assert gone.status_code == 404


def test_admin_company_contact_time_zone_round_trips(admin_session: Session):
    """A contact's time zone is stored and read back; a bad one is refused naming its field."""
    # GIVEN a company with a contact in Tokyo and a body with a made-up zone
    contacts = [{"email": "jane@acme.example", "name": "Jane", "timeZone": "Asia/Tokyo"}]
    body = {"name": "Acme", "domains": ["acme.example"], "contacts": contacts}
    bad = {**body, "contacts": [{"email": "jane@acme.example", "timeZone": "Asia/Atlantis"}]}

    # WHEN both are created and the first is read back
    created = admin_session.call(admin.admin_company_create, "POST", body=body)
    refused = admin_session.call(admin.admin_company_create, "POST", body=bad)
    route = {"company_id": _json(created)["id"]}
    fetched = admin_session.call(read.company_get, "GET", route=route)

    # THEN the zone comes back as given and the bad one is a 400 naming the field
    assert _json(fetched)["contacts"] == contacts
    assert refused.status_code == 400
    assert "contacts[0].timeZone" in refused.get_body().decode()


def test_company_get_of_another_tenant_is_not_found(admin_session: Session, session: Session):
    """A company id of another tenant answers 404, as an unknown id does."""
    # GIVEN a company of this tenant
    created = admin_session.call(admin.admin_company_create, "POST", body={"name": "Acme"})
    route = {"company_id": _json(created)["id"]}

    # WHEN a caller of another tenant asks for it
    session.tenant_id = str(uuid.uuid4())
    session.as_admin()
    response = session.call(read.company_get, "GET", route=route)

    # THEN it is not found
    assert response.status_code == 404
    assert _json(response)["error"]["code"] == "not_found"


def test_admin_company_create_refuses_bad_json(admin_session: Session):
    """Invalid JSON and a bad domain answer 400 naming the field."""
    # GIVEN a body that is not JSON and one with a bad domain
    # WHEN each is POSTed
    broken = admin_session.call(admin.admin_company_create, "POST", raw=b"{not json")
    bad = admin_session.call(
        admin.admin_company_create, "POST", body={"name": "A", "domains": ["ok.example", "x y"]}
    )

    # THEN both are 400 with the field
    assert (broken.status_code, _json(broken)["error"]["field"]) == (400, "body")
    assert (bad.status_code, _json(bad)["error"]["field"]) == (400, "domains[1]")


def test_admin_companies_import_json_and_csv(admin_session: Session):
    """JSON (a list or an object) and CSV imports answer with counts; re-import updates."""
    # GIVEN the same companies as a JSON object and as CSV
    rows = [{"name": "Acme", "externalId": "1"}, {"name": "Beta", "externalId": "2"}]
    csv_text = "name,externalId\nAcme,1\nBeta,2\n"

    # WHEN the JSON is imported, then the CSV
    first = admin_session.call(admin.admin_companies_import, "POST", body={"companies": rows})
    second = admin_session.call(
        admin.admin_companies_import,
        "POST",
        raw=csv_text.encode(),
        content_type="text/csv; charset=utf-8",
    )

    # THEN the first created both and the second updated both
    assert _json(first) == {"created": 2, "updated": 0}
    assert _json(second) == {"created": 0, "updated": 2}


def test_admin_companies_import_reports_bad_row_and_writes_nothing(admin_session: Session):
    """A bad CSV row answers 400 with its line, and no company is written."""
    # GIVEN a CSV file whose third line has a bad domain
    csv_text = "name,domains\nAcme,acme.example\nBeta,bad_domain\n"

    # WHEN it is imported
    response = admin_session.call(
        admin.admin_companies_import, "POST", raw=csv_text.encode(), content_type="text/csv"
    )
    listed = admin_session.call(admin.admin_companies_list, "GET")

    # THEN the line is named and nothing was written
    assert response.status_code == 400
    assert _json(response)["error"]["field"] == "csv line 3: domains[0]"
    assert _json(listed)["items"] == []


def test_admin_companies_import_refuses_other_media_types(admin_session: Session):
    """An import that is neither JSON nor CSV answers 415 with a JSON error."""
    # GIVEN an XML body
    # WHEN it is imported
    response = admin_session.call(
        admin.admin_companies_import, "POST", raw=b"<companies/>", content_type="application/xml"
    )

    # THEN it is 415 naming the Content-Type
    assert response.status_code == 415
    assert _json(response)["error"]["field"] == "Content-Type"


def test_admin_companies_list_refuses_bad_paging(admin_session: Session):
    """A bad page size or continuation token answers 400 naming the parameter."""
    # GIVEN a page size out of range and a token that was never issued
    # WHEN the companies are listed with each
    size = admin_session.call(admin.admin_companies_list, "GET", params={"pageSize": "0"})
    token = admin_session.call(
        admin.admin_companies_list, "GET", params={"continuationToken": "!!"}
    )

    # THEN each names its parameter
    assert (size.status_code, _json(size)["error"]["field"]) == (400, "pageSize")
    assert (token.status_code, _json(token)["error"]["field"]) == (400, "continuationToken")
