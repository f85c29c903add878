"""Functional tests of shared.directory.service against Azurite."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.tablelimits import table_key
from shared.adapters.tables import TableEntityStore
from shared.directory.companycsv import parse_companies_csv
from shared.directory.model import Contact, ImportResult
from shared.directory.service import DirectoryService
from shared.errors import ConflictError, NotFoundError, ValidationError
from shared.matching.companies import CompanyMatchData

if TYPE_CHECKING:
    from devstack.azurite import Azurite

TENANT_BODY = {"name": "Vendor", "ownDomains": ["vendor.example"]}


@pytest.fixture(scope="module")
def tables(azurite: Azurite) -> TableEntityStore:
    """A table store on the session's Azurite, with every table created."""
    store = TableEntityStore(TableServiceClient.from_connection_string(azurite.connection_string))
    store.ensure_tables()
    return store


@pytest.fixture
def directory(tables: TableEntityStore) -> DirectoryService:
    """A directory service on Azurite."""
    return DirectoryService(tables)


@pytest.fixture
def tenant_id(directory: DirectoryService) -> str:
    """A fresh tenant, set up, unique to the test."""
    tenant_id = str(uuid.uuid4())
    directory.upsert_tenant(tenant_id, TENANT_BODY)
    return tenant_id


def _contacts(tables: TableEntityStore, tenant_id: str) -> list[dict[str, Any]]:
    """Every stored contact row of a tenant."""
    return list(tables.list_partition("companycontacts", table_key(tenant_id)))


def test_upsert_tenant_round_trips_and_keeps_other_properties(
    directory: DirectoryService, tables: TableEntityStore
):
    """A tenant reads back as written, and an update keeps properties other features set."""
    # GIVEN a tenant set up with a custom backfill, and a property another feature added
    tenant_id = str(uuid.uuid4())
    directory.upsert_tenant(tenant_id, {**TENANT_BODY, "backfillDays": 30})
    tables.upsert("tenants", {"PartitionKey": "tenant", "RowKey": tenant_id, "dailyLimit": 50})

    # WHEN the admin replaces the settings without backfillDays
    saved = directory.upsert_tenant(tenant_id, {"name": "Vendor 2", "ownDomains": ["V.example"]})

    # THEN the settings read back with the default backfill and the other property survives
    assert directory.get_tenant(tenant_id) == saved
    assert saved.name == "Vendor 2"
    assert saved.own_domains == ("v.example",)
    assert saved.backfill_days == 360
    stored = tables.get("tenants", "tenant", tenant_id)
    assert stored is not None
    assert stored["dailyLimit"] == 50


def test_get_tenant_returns_none_when_not_set_up(directory: DirectoryService):
    """An unknown tenant reads as None."""
    # GIVEN a tenant id nobody set up
    # WHEN it is read
    # THEN there is no tenant
    assert directory.get_tenant(str(uuid.uuid4())) is None


def test_upsert_user_round_trips_and_lists(directory: DirectoryService, tenant_id: str):
    """A user reads back by upper- or lower-case oid and appears in the tenant's list."""
    # GIVEN a user added by an upper-case oid
    oid = str(uuid.uuid4())
    body = {"upn": "Jane@Vendor.example", "displayName": "Jane", "roles": ["CSM", "Admin"]}
    saved = directory.upsert_user(tenant_id, oid.upper(), body)

    # WHEN the user is read back and the users are listed
    found = directory.get_user(tenant_id, oid)
    listed = directory.list_users(tenant_id)

    # THEN all agree, with the oid and UPN normalised
    assert found == saved
    assert listed == [saved]
    assert saved.user_id == oid
    assert saved.upn == "jane@vendor.example"
    assert saved.roles == ("CSM", "Admin")


def test_upsert_user_refuses_tenant_not_set_up(directory: DirectoryService):
    """Users cannot be added before their tenant is set up."""
    # GIVEN a tenant id nobody set up
    tenant_id = str(uuid.uuid4())

    # WHEN a user is added
    with pytest.raises(NotFoundError, match="not set up"):
        directory.upsert_user(tenant_id, str(uuid.uuid4()), {"upn": "a@vendor.example"})

    # THEN nothing was written, and listing users is refused the same way
    assert directory.get_tenant(tenant_id) is None
    with pytest.raises(NotFoundError, match="not set up"):
        directory.list_users(tenant_id)


def test_get_user_of_another_tenant_is_none(directory: DirectoryService, tenant_id: str):
    """A user is only found under its own tenant."""
    # GIVEN a user of one tenant and a second tenant
    oid = str(uuid.uuid4())
    directory.upsert_user(tenant_id, oid, {"upn": "a@vendor.example"})
    other = str(uuid.uuid4())
    directory.upsert_tenant(other, TENANT_BODY)

    # WHEN the user is looked up under the second tenant
    # THEN it is not found
    assert directory.get_user(other, oid) is None


def test_create_company_round_trips_with_contacts(directory: DirectoryService, tenant_id: str):
    """A created company reads back with its domains and contacts."""
    # GIVEN a company body with domains and contacts in both shapes
    body = {
        "name": "Acme",
        "domains": ["Acme.example", "acme.io"],
        "contacts": [{"email": "Jane@acme.example", "name": "Jane"}, "Bob <bob@acme.example>"],
        "externalId": "crm-1",
    }

    # WHEN it is created and read back
    created = directory.create_company(tenant_id, body)
    found = directory.get_company(tenant_id, created.company_id)

    # THEN it reads back as created, with a GUID id
    assert found == created
    assert uuid.UUID(created.company_id)
    assert created.domains == ("acme.example", "acme.io")
    assert set(created.contacts) == {
        Contact("jane@acme.example", "Jane"),
        Contact("bob@acme.example", "Bob"),
    }


def test_get_company_of_another_tenant_is_not_found(directory: DirectoryService, tenant_id: str):
    """A company id from another tenant is as unknown as a made-up one."""
    # GIVEN a company of one tenant and a second tenant
    company = directory.create_company(tenant_id, {"name": "Acme"})
    other = str(uuid.uuid4())
    directory.upsert_tenant(other, TENANT_BODY)

    # WHEN it is read under the second tenant, and a made-up id under the first
    # THEN both are not found
    with pytest.raises(NotFoundError):
        directory.get_company(other, company.company_id)
    with pytest.raises(NotFoundError):
        directory.get_company(tenant_id, "no-such-company")


def test_create_company_refuses_taken_external_id(directory: DirectoryService, tenant_id: str):
    """Two companies of one tenant cannot share an externalId."""
    # GIVEN a company with externalId crm-1
    directory.create_company(tenant_id, {"name": "Acme", "externalId": "crm-1"})

    # WHEN another company claims it
    # THEN it is refused
    with pytest.raises(ConflictError):
        directory.create_company(tenant_id, {"name": "Other", "externalId": "crm-1"})


def test_upsert_company_replaces_contacts_only_when_given(
    directory: DirectoryService, tables: TableEntityStore, tenant_id: str
):
    """PUT without contacts keeps them; PUT with contacts replaces them and drops the rest."""
    # GIVEN a company with two contacts
    body = {"name": "Acme", "contacts": ["a@acme.example", "b@acme.example"]}
    company = directory.create_company(tenant_id, body)

    # WHEN it is renamed without contacts, then given one old and one new contact
    renamed = directory.upsert_company(tenant_id, company.company_id, {"name": "Acme Inc"})
    replaced = directory.upsert_company(
        tenant_id,
        company.company_id,
        {"name": "Acme Inc", "contacts": ["b@acme.example", "c@acme.example"]},
    )

    # THEN the rename kept both contacts and the replacement left exactly the new list stored
    assert {c.address for c in renamed.contacts} == {"a@acme.example", "b@acme.example"}
    assert {c.address for c in replaced.contacts} == {"b@acme.example", "c@acme.example"}
    stored = {row["address"] for row in _contacts(tables, tenant_id)}
    assert stored == {"b@acme.example", "c@acme.example"}
    summaries, _ = directory.list_companies(tenant_id, page_size=10)
    assert [s.contact_count for s in summaries] == [2]


def test_upsert_company_creates_under_a_chosen_guid(directory: DirectoryService, tenant_id: str):
    """PUT to a new GUID creates the company under that id; a non-GUID id is refused."""
    # GIVEN a GUID nobody used
    company_id = str(uuid.uuid4())

    # WHEN a company is PUT there, and another to a non-GUID id
    created = directory.upsert_company(tenant_id, company_id.upper(), {"name": "Acme"})

    # THEN the first is readable under the lower-case id and the second names the id
    assert directory.get_company(tenant_id, company_id) == created
    with pytest.raises(ValidationError) as caught:
        directory.upsert_company(tenant_id, "acme", {"name": "Acme"})
    assert caught.value.field == "company_id"


def test_delete_company_removes_its_contacts(
    directory: DirectoryService, tables: TableEntityStore, tenant_id: str
):
    """Deleting a company removes its contact rows and leaves other companies' contacts."""
    # GIVEN two companies with contacts
    acme = directory.create_company(tenant_id, {"name": "Acme", "contacts": ["a@acme.example"]})
    directory.create_company(tenant_id, {"name": "Beta", "contacts": ["b@beta.example"]})

    # WHEN the first is deleted
    directory.delete_company(tenant_id, acme.company_id)

    # THEN it is gone with its contacts, a second delete is not found, and Beta's stay
    with pytest.raises(NotFoundError):
        directory.get_company(tenant_id, acme.company_id)
    with pytest.raises(NotFoundError):
        directory.delete_company(tenant_id, acme.company_id)
    assert [row["address"] for row in _contacts(tables, tenant_id)] == ["b@beta.example"]


def test_company_match_data_lists_domains_and_contacts(directory: DirectoryService, tenant_id: str):
    """Match data holds every company with its domains and contact addresses."""
    # GIVEN a company with a domain and a contact, and one with a domain only
    acme = directory.create_company(
        tenant_id, {"name": "Acme", "domains": ["acme.example"], "contacts": ["x@gmail.example"]}
    )
    beta = directory.create_company(tenant_id, {"name": "Beta", "domains": ["beta.example"]})

    # WHEN the match data is read
    data = directory.company_match_data(tenant_id)

    # THEN both companies are there with what the index needs
    assert sorted(data, key=lambda d: d.company_id) == sorted(
        [
            CompanyMatchData(acme.company_id, ("acme.example",), ("x@gmail.example",)),
            CompanyMatchData(beta.company_id, ("beta.example",), ()),
        ],
        key=lambda d: d.company_id,
    )


def test_company_match_data_ignores_contacts_of_a_missing_company(
    directory: DirectoryService, tables: TableEntityStore, tenant_id: str
):
    """A contact row whose company row is gone (an interrupted delete) matches nothing."""
    # GIVEN a contact row left behind without its company
    tables.upsert(
        "companycontacts",
        {
            "PartitionKey": table_key(tenant_id),
            "RowKey": table_key("gone", "x@acme.example"),
            "companyId": "gone",
            "address": "x@acme.example",
            "name": "",
        },
    )

    # WHEN the match data is read
    # THEN there is no company
    assert directory.company_match_data(tenant_id) == []


def test_list_companies_pages_with_token(directory: DirectoryService, tenant_id: str):
    """Companies come a page at a time, each once, until there is no token."""
    # GIVEN five companies
    names = {f"C{index}" for index in range(5)}
    directory.import_companies(tenant_id, [{"name": name} for name in names])

    # WHEN they are listed two at a time
    seen: list[str] = []
    token = None
    while True:
        page, token = directory.list_companies(tenant_id, page_size=2, token=token)
        seen.extend(company.name for company in page)
        if token is None:
            break

    # THEN every company came exactly once
    assert sorted(seen) == sorted(names)


def test_import_companies_is_idempotent_by_external_id(
    directory: DirectoryService, tables: TableEntityStore, tenant_id: str
):
    """Importing the same file twice updates the companies instead of duplicating them."""
    # GIVEN an import file with externalIds
    rows = [
        {
            "name": "Acme",
            "domains": ["acme.example"],
            "externalId": "1",
            "contacts": ["a@acme.example"],
        },
        {"name": "Beta", "domains": ["beta.example"], "externalId": "2"},
    ]

    # WHEN it is imported twice, the second time with a renamed company
    first = directory.import_companies(tenant_id, rows)
    rows[0] = {**rows[0], "name": "Acme Renamed"}
    second = directory.import_companies(tenant_id, rows)

    # THEN the first created two, the second updated two, and there are still two companies
    assert first == ImportResult(created=2, updated=0)
    assert second == ImportResult(created=0, updated=2)
    summaries, _ = directory.list_companies(tenant_id, page_size=10)
    assert sorted(s.name for s in summaries) == ["Acme Renamed", "Beta"]
    assert len(_contacts(tables, tenant_id)) == 1


def test_import_companies_keeps_stored_values_a_row_leaves_out(
    directory: DirectoryService, tenant_id: str
):
    """A re-import without contacts or externalId keeps the stored contacts and externalId."""
    # GIVEN a company with a contact and an externalId
    company = directory.create_company(
        tenant_id, {"name": "Acme", "externalId": "crm-1", "contacts": ["a@acme.example"]}
    )

    # WHEN a file names it by name only, with a new domain
    result = directory.import_companies(tenant_id, [{"name": "Acme", "domains": ["acme.io"]}])

    # THEN it was updated and still has its contact and externalId
    found = directory.get_company(tenant_id, company.company_id)
    assert result == ImportResult(created=0, updated=1)
    assert found.domains == ("acme.io",)
    assert found.external_id == "crm-1"
    assert [c.address for c in found.contacts] == ["a@acme.example"]


def test_import_companies_with_one_bad_row_writes_nothing(
    directory: DirectoryService, tables: TableEntityStore, tenant_id: str
):
    """One bad row refuses the whole import, naming the row and field, before any write."""
    # GIVEN an import whose fourth row has a bad domain
    rows: list[dict[str, Any]] = [
        {"name": f"C{index}", "contacts": [f"x{index}@c.example"]} for index in range(3)
    ]
    rows.append({"name": "Bad", "domains": ["not a domain"]})

    # WHEN it is imported
    with pytest.raises(ValidationError) as caught:
        directory.import_companies(tenant_id, rows)

    # THEN the row is named and nothing was written
    assert caught.value.field == "companies[3].domains[0]"
    assert directory.list_companies(tenant_id, page_size=10) == ([], None)
    assert _contacts(tables, tenant_id) == []


def test_import_companies_from_csv(directory: DirectoryService, tenant_id: str):
    """A CSV file imports like the same companies as JSON."""
    # GIVEN a CSV file with two companies
    text = (
        "name,domains,contacts,externalId\nAcme,acme.example,Jane <jane@acme.example>,1\nBeta,,,\n"
    )

    # WHEN it is parsed and imported
    result = directory.import_companies(tenant_id, parse_companies_csv(text))

    # THEN both exist, with the contact's name from the cell
    assert result == ImportResult(created=2, updated=0)
    data = {d.contacts for d in directory.company_match_data(tenant_id)}
    assert data == {("jane@acme.example",), ()}


def test_import_companies_refuses_tenant_not_set_up(directory: DirectoryService):
    """Companies cannot be imported before their tenant is set up."""
    # GIVEN a tenant id nobody set up
    # WHEN an import is sent
    # THEN it is refused as not found
    with pytest.raises(NotFoundError, match="not set up"):
        directory.import_companies(str(uuid.uuid4()), [{"name": "Acme"}])


def test_owner_index_follows_every_kind_of_company_write(
    directory: DirectoryService, tenant_id: str
):
    """Create, replace, import and delete keep each user's owned companies exact."""
    # GIVEN two registered users
    ann, ben = str(uuid.uuid4()), str(uuid.uuid4())
    for user in (ann, ben):
        directory.upsert_user(tenant_id, user, {"upn": f"{user[:8]}@vendor.example"})

    # WHEN Ann's company passes to Ben, an import gives Ann another, and a rename keeps owners
    acme = directory.create_company(tenant_id, {"name": "Acme", "ownerIds": [ann]}).company_id
    after_create = directory.owned_company_ids(tenant_id, ann)
    directory.upsert_company(tenant_id, acme, {"name": "Acme", "ownerIds": [ben]})
    directory.import_companies(
        tenant_id, [{"name": "Globex", "externalId": "g-1", "ownerIds": [ann, ben]}]
    )
    directory.upsert_company(tenant_id, acme, {"name": "Acme Inc"})
    owned_before_delete = {
        user: sorted(directory.owned_company_ids(tenant_id, user)) for user in (ann, ben)
    }
    globex = next(i for i in owned_before_delete[ann] if i != acme)
    directory.delete_company(tenant_id, globex)

    # THEN the index always says who owns what, and a deleted company leaves it
    assert after_create == [acme]
    assert owned_before_delete == {ann: [globex], ben: sorted([acme, globex])}
    assert directory.owned_company_ids(tenant_id, ann) == []
    assert directory.owned_company_ids(tenant_id, ben) == [acme]
