"""Unit tests for shared.access.permissions: roles, portfolio, masking, workflows, storage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from shared.access.auth import Caller
from shared.access.permissions import (
    AccessView,
    Feature,
    ObjectType,
    PermissionService,
    Portfolio,
    Workflow,
)
from shared.access.policy import parse_policy
from shared.directory.service import DirectoryService
from shared.errors import ForbiddenError, NotFoundError, ValidationError
from tests.unit.fakes import FakeTables

TENANT = "11111111-1111-1111-1111-111111111111"


@dataclass(frozen=True)
class _Company:
    owner_ids: tuple[str, ...]


def _setup() -> tuple[PermissionService, DirectoryService]:
    tables = FakeTables()
    directory = DirectoryService(tables)  # type: ignore[arg-type]
    directory.upsert_tenant(TENANT, {"name": "T", "ownDomains": ["t.example"]})
    return PermissionService(tables, directory), directory  # type: ignore[arg-type]


def _user(directory: DirectoryService, *roles: str, token_roles: tuple[str, ...] = ()) -> Caller:
    oid = str(uuid.uuid4())
    body = {"upn": f"{oid[:8]}@t.example", "roles": list(roles)}
    directory.upsert_user(TENANT, oid, body)
    return Caller(TENANT, oid, frozenset(token_roles), "")


def _admin() -> Caller:
    return Caller(TENANT, str(uuid.uuid4()), frozenset({"Admin"}), "")


def _view(policy: dict[str, Any], user_id: str = "u") -> AccessView:
    parsed = parse_policy(policy)
    return AccessView(user_id, is_admin=False, entries=parsed.entries_for(parsed.roles))


EMAIL = {
    "id": "e1",
    "subject": "Renewal",
    "body": {"contentType": "text", "content": "hello"},
    "bodyPreview": "hello",
    "from": {"address": "a@x.example"},
    "recipients": {"to": []},
    "sentDateTime": "2026-01-01T00:00:00Z",
}


def test_mask_removes_hidden_fields_and_keeps_id():
    """A role that sees participants and dates gets no subject, body or preview keys at all."""
    # GIVEN a role that may see only participants and dates of emails
    view = _view(
        {"roles": {"Viewer": {"fields": {"email": {"visible": ["from", "sentDateTime"]}}}}}
    )

    # WHEN an email is masked
    masked = view.mask(ObjectType.EMAIL, EMAIL)

    # THEN only the id and the visible fields are left
    assert masked == {"id": "e1", "from": EMAIL["from"], "sentDateTime": EMAIL["sentDateTime"]}


def test_mask_hiding_body_also_hides_its_preview():
    """The preview is the body's start, so hiding the body hides it too."""
    # GIVEN a role hiding the subject and body only
    view = _view({"roles": {"R": {"fields": {"email": {"hidden": ["subject", "body"]}}}}})

    # WHEN an email is masked
    masked = view.mask(ObjectType.EMAIL, EMAIL)

    # THEN the preview is gone with the body
    assert "bodyPreview" not in masked
    assert "subject" not in masked
    assert masked["from"] == EMAIL["from"]


def test_mask_hides_one_custom_company_property():
    """A role that may not see ARR gets the company's other properties without it."""
    # GIVEN a role hiding properties.arr
    view = _view({"roles": {"R": {"fields": {"company": {"hidden": ["properties.arr"]}}}}})
    company = {"id": "c", "name": "Acme", "properties": {"arr": 12, "tier": "gold"}}

    # WHEN the company is masked
    masked = view.mask(ObjectType.COMPANY, company)

    # THEN arr is absent and tier stays
    assert masked == {"id": "c", "name": "Acme", "properties": {"tier": "gold"}}


def test_mask_drops_properties_when_every_one_is_hidden():
    """When no custom property is visible, the properties key itself is absent."""
    # GIVEN a role that sees only the company name
    view = _view({"roles": {"R": {"fields": {"company": {"visible": ["name"]}}}}})

    # WHEN a company is masked / THEN only id and name remain
    masked = view.mask(ObjectType.COMPANY, {"id": "c", "name": "A", "properties": {"arr": 1}})
    assert masked == {"id": "c", "name": "A"}


def test_union_of_roles_shows_a_field_any_role_shows():
    """A caller with two roles sees a field when either role sees it."""
    # GIVEN two roles hiding different fields
    view = _view(
        {
            "roles": {
                "A": {"fields": {"email": {"hidden": ["subject"]}}, "portfolio": "owned"},
                "B": {"fields": {"email": {"hidden": ["body"]}}, "portfolio": "all"},
            }
        }
    )

    # WHEN an email is masked / THEN each field hidden by only one role is visible
    masked = view.mask(ObjectType.EMAIL, EMAIL)
    assert masked == EMAIL
    assert view.portfolio is Portfolio.ALL


def test_owned_portfolio_sees_only_companies_the_user_owns():
    """An owned-only portfolio sees a company exactly when the user is one of its owners."""
    # GIVEN a role limited to owned companies
    view = _view({"roles": {"R": {"portfolio": "owned"}}}, user_id="me")

    # WHEN companies are checked / THEN ownership decides
    assert view.visible_company(_Company(("me", "other")))
    assert not view.visible_company(_Company(("other",)))
    assert not view.visible_company(_Company(()))


def test_service_without_policy_applies_built_in_defaults():
    """A tenant that configured nothing lets users connect mail and use the shared inbox only."""
    # GIVEN a tenant with no policy and a registered user
    service, directory = _setup()
    caller = _user(directory, "Member")

    # WHEN the user's permissions are checked
    view = service.view_for(caller)

    # THEN the defaults apply
    assert view.allows_feature(Feature.MAIL)
    assert view.allows_feature(Feature.CALENDAR)
    assert view.allows_workflow(Workflow.SHARED_INBOX)
    assert view.allows_workflow(Workflow.AUTOMATIC_EMAILS)
    assert not view.allows_workflow(Workflow.POWER_TOOLS_ON_OTHERS)
    assert not view.allows_workflow(Workflow.MANAGE_SETTINGS)
    assert view.portfolio is Portfolio.ALL


def test_service_roles_come_from_directory_and_token():
    """A role given by the directory and one carried in the token both count."""
    # GIVEN a policy where only Managers may manage settings and only Callers connect calendar
    service, directory = _setup()
    policy = {
        "default": {"features": ["mail"], "workflows": []},
        "roles": {
            "Manager": {"workflows": ["manageSettings"]},
            "Caller": {"features": ["mail", "calendar"]},
        },
    }
    service.set_policy(_admin(), policy)
    by_directory = _user(directory, "Manager")
    by_token = _user(directory, token_roles=("Caller",))

    # WHEN each is checked
    # THEN each role applies to the user that holds it, from wherever it came
    service.require_workflow(by_directory, Workflow.MANAGE_SETTINGS)
    service.require_feature(by_token, Feature.CALENDAR)
    with pytest.raises(ForbiddenError):
        service.require_feature(by_directory, Feature.CALENDAR)
    with pytest.raises(ForbiddenError):
        service.require_workflow(by_token, Workflow.MANAGE_SETTINGS)


def test_service_admin_may_do_everything_whatever_the_policy():
    """The Admin app role bypasses every layer."""
    # GIVEN a policy that allows nothing to anyone
    service, _directory = _setup()
    nothing = {"features": [], "workflows": [], "portfolio": "owned"}
    service.set_policy(_admin(), {"default": nothing})

    # WHEN an admin is checked
    view = service.view_for(_admin())

    # THEN everything is allowed and nothing masked
    assert all(view.allows_workflow(w) for w in Workflow)
    assert all(view.allows_feature(f) for f in Feature)
    assert view.visible_company(_Company(()))
    assert view.mask(ObjectType.EMAIL, EMAIL) == EMAIL


def test_service_refuses_unregistered_callers():
    """A caller who is neither an admin nor a registered user gets no view at all."""
    # GIVEN a caller the directory does not know
    service, _directory = _setup()
    stranger = Caller(TENANT, str(uuid.uuid4()), frozenset(), "")

    # WHEN their permissions are resolved / THEN they are refused
    with pytest.raises(ForbiddenError):
        service.view_for(stranger)


def test_service_set_policy_needs_manage_settings():
    """A user without manageSettings cannot read or replace the policy."""
    # GIVEN a plain member under the defaults
    service, directory = _setup()
    member = _user(directory, "Member")

    # WHEN they try / THEN both are forbidden
    with pytest.raises(ForbiddenError):
        service.set_policy(member, {})
    with pytest.raises(ForbiddenError):
        service.policy_for(member)


def test_service_set_policy_stores_and_reads_back():
    """A saved policy is what the next read returns, with who saved it and when."""
    # GIVEN an admin
    service, _directory = _setup()
    admin = _admin()

    # WHEN they save a policy
    saved = service.set_policy(admin, {"roles": {"Sales": {"portfolio": "owned"}}})

    # THEN it reads back the same, stamped
    read = service.policy_for(admin)
    assert read.roles == saved.roles
    assert read.roles["Sales"].portfolio is Portfolio.OWNED
    assert read.updated_by == admin.user_id
    assert read.updated_at


def test_service_refused_policy_leaves_stored_one_alone():
    """An invalid document is refused and the stored policy stays as it was."""
    # GIVEN a stored policy
    service, _directory = _setup()
    admin = _admin()
    service.set_policy(admin, {"roles": {"Sales": {"portfolio": "owned"}}})

    # WHEN a broken document is sent
    with pytest.raises(ValidationError) as caught:
        service.set_policy(admin, {"roles": {"Sales": {"portfolio": "some"}}})

    # THEN it names the field and the old policy stays
    assert caught.value.field == "roles.Sales.portfolio"
    assert service.get_policy(TENANT).roles["Sales"].portfolio is Portfolio.OWNED


def test_mask_event_fields_follow_the_fields_they_derive_from():
    """Hiding an event's start and attendees also hides startDate, timeZone and the count."""
    # GIVEN a role that hides the start and the attendees of events
    view = _view({"roles": {"R": {"fields": {"event": {"hidden": ["start", "attendees"]}}}}})
    event = {
        "id": "ev",
        "subject": "QBR",
        "start": "2026-01-01T09:00:00Z",
        "startDate": None,
        "timeZone": "UTC",
        "end": "2026-01-01T10:00:00Z",
        "endDate": None,
        "upcoming": False,
        "attendeeCount": 3,
    }

    # WHEN an event is masked
    masked = view.mask(ObjectType.EVENT, event)

    # THEN every field telling of the start or the attendees is gone; the end stays
    assert masked == {
        "id": "ev",
        "subject": "QBR",
        "end": event["end"],
        "endDate": None,
        "upcoming": False,
    }


def test_effective_permissions_list_what_the_caller_may_do_and_see():
    """The caller's effective view names their portfolio, features, workflows and fields."""
    # GIVEN a tenant policy with a narrow Viewer role, and a user holding it
    service, directory = _setup()
    admin = _admin()
    policy = {
        "roles": {
            "Viewer": {
                "portfolio": "owned",
                "features": ["mail"],
                "workflows": ["sharedInbox"],
                "fields": {"email": {"visible": ["from", "sentDateTime"]}},
            }
        }
    }
    service.set_policy(admin, policy)
    viewer = _user(directory, "Viewer")

    # WHEN the viewer and an admin ask what they may do
    mine = service.effective(viewer)
    theirs = service.effective(admin)

    # THEN the viewer's answer is narrow and the admin's is whole
    assert mine["portfolio"] == "owned"
    assert mine["features"] == ["mail"]
    assert mine["workflows"] == ["sharedInbox"]
    assert mine["visibleFields"]["email"] == ["from", "sentDateTime"]
    assert "properties" in mine["visibleFields"]["company"]
    assert theirs["isAdmin"] is True
    assert theirs["portfolio"] == "all"
    assert len(theirs["workflows"]) == len(Workflow)


def test_set_policy_for_a_tenant_not_set_up_is_not_found():
    """A policy cannot be saved for a tenant whose admin has not set it up."""
    # GIVEN an admin of a tenant that does not exist in the directory
    service, _ = _setup()
    stranger = Caller(str(uuid.uuid4()), str(uuid.uuid4()), frozenset({"Admin"}), "")

    # WHEN they save a policy / THEN it is refused as not found
    with pytest.raises(NotFoundError):
        service.set_policy(stranger, {"roles": {}})


def test_mask_hiding_contacts_also_hides_their_count():
    """The contact count tells of the contacts, so it goes when they are hidden."""
    view = _view({"roles": {"R": {"fields": {"company": {"hidden": ["contacts"]}}}}})
    masked = view.mask(ObjectType.COMPANY, {"id": "c", "name": "A", "contactCount": 3})
    assert masked == {"id": "c", "name": "A"}


# A settings manager may see owned companies only, use the shared inbox and manage settings, and
# sees emails without their bodies and companies without their ARR.
OPS_POLICY: dict[str, Any] = {
    "default": {
        "features": ["mail"],
        "portfolio": "owned",
        "workflows": [],
        "fields": {"email": {"hidden": ["body"]}, "company": {"hidden": ["properties.arr"]}},
    },
    "roles": {
        "Ops": {
            "features": ["mail"],
            "portfolio": "owned",
            "workflows": ["manageSettings", "sharedInbox"],
            "fields": {"email": {"hidden": ["body"]}, "company": {"hidden": ["properties.arr"]}},
        },
        "Sales": {"features": ["mail"], "portfolio": "owned", "workflows": []},
    },
}


def _ops_setup() -> tuple[PermissionService, Caller]:
    service, directory = _setup()
    service.set_policy(_admin(), OPS_POLICY)
    return service, _user(directory, "Ops")


def _with_role(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {**OPS_POLICY, "roles": {**OPS_POLICY["roles"], name: entry}}


@pytest.mark.parametrize(
    "entry",
    [
        {"features": ["mail", "calendar"], "portfolio": "owned", "workflows": []},
        {"features": ["mail"], "portfolio": "all", "workflows": []},
        {"features": ["mail"], "portfolio": "owned", "workflows": ["powerToolsOnOthers"]},
        {"workflows": [], "fields": {"email": {"hidden": []}}},
        {"workflows": [], "fields": {"company": {"hidden": ["properties.other"]}}},
    ],
    ids=["feature", "portfolio", "workflow", "email-body", "company-arr"],
)
def test_service_settings_manager_cannot_give_a_role_more_than_they_have(entry: dict[str, Any]):
    """A non-admin manager may not let another role do or see what they may not."""
    # GIVEN an Ops manager and a Sales entry raised past Ops in one way
    service, ops = _ops_setup()

    # WHEN Ops saves it / THEN it is refused naming the entry, and the policy is unchanged
    with pytest.raises(ForbiddenError, match=r"roles\.Sales"):
        service.set_policy(ops, _with_role("Sales", entry))
    assert service.get_policy(TENANT).as_json()["roles"]["Sales"]["portfolio"] == "owned"
    assert service.get_policy(TENANT).roles["Sales"].workflows == frozenset()


def test_service_settings_manager_cannot_change_their_own_role():
    """A non-admin manager may not change the entry that decides what they themselves may do."""
    # GIVEN an Ops manager
    service, ops = _ops_setup()
    raised = {**OPS_POLICY["roles"]["Ops"], "workflows": ["manageSettings", "powerToolsOnOthers"]}

    # WHEN Ops raises, or even lowers, the Ops entry / THEN both are refused
    with pytest.raises(ForbiddenError, match="own roles"):
        service.set_policy(ops, _with_role("Ops", raised))
    with pytest.raises(ForbiddenError, match="own roles"):
        service.set_policy(ops, _with_role("Ops", {"features": [], "workflows": []}))


def test_service_settings_manager_may_narrow_a_role_that_exceeds_their_own():
    """A role that already allows more than the manager may still be narrowed by them."""
    # GIVEN a policy (set by an admin) where Leads see all companies and use power tools
    service, ops = _ops_setup()
    leads = {"portfolio": "all", "workflows": ["powerToolsOnOthers", "sharedInbox"]}
    service.set_policy(_admin(), _with_role("Leads", leads))
    current = service.get_policy(TENANT).as_json()

    # WHEN Ops takes the shared inbox from Leads, keeping the rest
    current["roles"]["Leads"]["workflows"] = ["powerToolsOnOthers"]
    saved = service.set_policy(ops, current)

    # THEN the narrower entry is saved
    assert saved.roles["Leads"].workflows == frozenset({Workflow.POWER_TOOLS_ON_OTHERS})


def test_service_settings_manager_may_lower_or_add_roles_within_their_own():
    """A non-admin manager may narrow a role or add one that allows no more than they have."""
    # GIVEN an Ops manager
    service, ops = _ops_setup()
    narrower = {"features": [], "portfolio": "owned", "workflows": []}
    same_as_ops = {
        "features": ["mail"],
        "portfolio": "owned",
        "workflows": ["sharedInbox"],
        "fields": {"email": {"hidden": ["body"]}, "company": {"hidden": ["properties.arr"]}},
    }

    # WHEN Ops narrows Sales and adds a Support role like their own minus settings
    policy = _with_role("Sales", narrower)
    policy["roles"]["Support"] = same_as_ops
    saved = service.set_policy(ops, policy)

    # THEN the policy is saved
    assert saved.roles["Sales"].features == frozenset()
    assert "Support" in saved.roles
