"""Generate seeded, realistic mailboxes for the Microsoft 365 simulator, the demo and tests.

Every message is written as raw RFC 5322 mail first and then turned into Graph JSON by
``mailload``, so headers, ``internetMessageHeaders`` and ``conversationId`` agree exactly as
they would for real mail. One ``random.Random(seed)`` drives every choice; for a given seed,
arguments and ``now`` the output is identical on every run.

:func:`demo_companies` invents customer companies; :func:`generate_mailboxes` gives each user a
mix of threads of every kind (customers, colleagues, newsletters, automatic replies, private
and system mail), made by :class:`devstack.mailworld.World` and written as mail by
:mod:`devstack.mailrender`, each module with the known limitations of its part. Dates are
spread over ``days`` before ``now``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from devstack.mailworld import FIRST, LAST, World, make_contact

# A company's domain is the first word of its name: "Acme Logistics" writes from acme.example.
_COMPANIES = (
    "Acme Logistics",
    "Globex Manufacturing",
    "Initech Consulting",
    "Umbrella Health",
    "Stark Components",
    "Nordwind Energie",
    "Tyrell Robotics",
)
_IDN_COMPANY = ("Bücherhaus Lindqvist", "bücher")
# Thread kinds and their relative frequency; each user gets every kind once, then by weight.
_KIND_WEIGHTS = {
    "customer_in": 30,
    "customer_out": 25,
    "customer_shared": 10,
    "internal": 12,
    "newsletter": 8,
    "auto_reply": 5,
    "private": 6,
    "system": 4,
}


def demo_companies(seed: int = 7, count: int = 6) -> list[dict[str, Any]]:
    """Return ``count`` plausible customer companies with ``.example`` domains and contacts.

    One company has an IDN domain (``bücher.example``); the first other company's contacts
    write from regional subdomains (``eu.``/``us.``) of its listed domain; the second has a
    known contact at a free-mail domain.
    """
    if not 1 <= count <= len(_COMPANIES) + 1:
        message = f"count must be between 1 and {len(_COMPANIES) + 1}, got {count}"
        raise ValueError(message)
    rng = random.Random(seed)
    regulars = [(name, name.split()[0].lower()) for name in rng.sample(_COMPANIES, count - 1)]
    picks = [*regulars, _IDN_COMPANY]
    rng.shuffle(picks)
    names = rng.sample([(first, last) for first in FIRST for last in LAST], 3 * count)

    companies, regular = [], 0
    for index, (company, stem) in enumerate(picks):
        domain = f"{stem}.example"
        # The first regular company writes from regional subdomains of its listed domain.
        hosts = [f"eu.{domain}", f"us.{domain}"] if regular == 0 and stem != "bücher" else [domain]
        contacts = [
            make_contact(first, last, hosts[n % len(hosts)], style=(index + n) % 3)
            for n, (first, last) in enumerate(names[3 * index : 3 * index + 3])
        ]
        if regular == 1 and stem != "bücher":
            contacts.append({"email": f"{stem}.owner@gmail.example", "name": "Sam Owner"})
        regular += stem != "bücher"
        companies.append({"name": company, "domains": [domain], "contacts": contacts})
    return companies


def generate_mailboxes(
    *,
    seed: int,
    tenant_domain: str,
    users: list[tuple[str, str]],
    companies: list[dict[str, Any]],
    days: int = 90,
    threads_per_user: int = 40,
    now: datetime | None = None,
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Generate every user's mail: upn -> ``[(well-known folder, Graph message without id)]``.

    ``users`` are ``(upn, display name)`` pairs. ``companies`` use ``demo_companies``' shape;
    a company that lists domains but no contacts gets two invented contacts. ``now`` defaults
    to the current time and is the only input that makes two runs differ.

    Raises:
        ValueError: when ``now`` is naive or no company has a domain or a contact.
    """
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        message = f"now must be timezone-aware, got {moment.isoformat()}"
        raise ValueError(message)
    world = World(random.Random(seed), tenant_domain, moment, users, companies)

    for person in world.staff:
        kinds = [*_KIND_WEIGHTS][:threads_per_user]
        weights = list(_KIND_WEIGHTS.values())
        kinds += world.rng.choices([*_KIND_WEIGHTS], weights, k=threads_per_user - len(kinds))
        for kind in kinds:
            thread = getattr(world, f"thread_{kind}")(person, world.office_hours(days))
            world.deliver_thread(thread)
    return {
        upn: sorted(box, key=lambda item: item[1]["receivedDateTime"])
        for upn, box in world.boxes.items()
    }
