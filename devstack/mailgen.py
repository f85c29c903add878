"""Generate seeded, realistic mailboxes for the Microsoft 365 simulator, the demo and tests.

Every message is written as raw RFC 5322 mail first and then turned into Graph JSON by
``mailload``, so headers, ``internetMessageHeaders`` and ``conversationId`` agree exactly as
they would for real mail. One ``random.Random(seed)`` drives every choice; for a given seed,
arguments and ``now`` the output is identical on every run.

The mix per user: customer threads in both directions with replies (some with a colleague in
Cc or Bcc, so both mailboxes hold the same ``internetMessageId``: a Sent Items copy for the
sender, an Inbox copy for the colleague), internal mail among colleagues, newsletters
(``List-Id``, ``Precedence: bulk``), automatic replies (``Auto-Submitted: auto-replied``),
private mail (a lawyer, family at free-mail domains) and system mail without a Message-ID.
Contacts appear with commas in display names (quoted or RFC 2047-encoded), non-ASCII names,
upper-case addresses, regional subdomains and an IDN domain written in both Unicode and
punycode form. Dates are spread over ``days`` before ``now``.

Known limitations:
    Bodies come from a small set of English, German and French sentences and contain no
    images. Exchange-only fields (``conversationIndex``, categories, flags) are not produced.
    Replies quote only the message they answer, not the whole thread.
"""

from __future__ import annotations

import html
import random
import re
import unicodedata
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from typing import Any

from devstack.mailload import graph_message_from_eml

_FIRST = ("Jane", "John", "Amara", "Jürgen", "Zoë", "Søren", "Lucía", "Wei", "Priya", "Łukasz")
_LAST = ("Doe", "Okafor", "Müller", "Ångström", "Novak", "Tanaka", "García", "Brennan", "Ivanova")
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
_UNDECOMPOSABLE = str.maketrans("øØłŁ", "oOlL")
_OFFSETS = (-5, 0, 1, 2, 9)
_CUSTOMER_SUBJECTS = (
    "Quote for {n} pallet racks",
    "Renewal of the support contract {year}",
    "Invoice {n} - payment terms",
    "Delivery schedule for order {n}",
    "Question about the API rate limits",
    "Ihre Anfrage: Lieferung nach München",
    "Contrat de maintenance - révision {year}",
)
_CUSTOMER_LINES = (
    "Thanks for the call earlier, here is the summary we agreed on.",
    "Could you confirm the delivery date for the second batch?",
    "Please find the revised figures below; the discount applies from next month.",
    "Wir bestätigen den Liefertermin und senden die Unterlagen bis Freitag.",
    "Nous avons bien reçu votre offre et revenons vers vous cette semaine.",
)
_INTERNAL = ("Pipeline review", "Holiday cover next week", "Draft slides for the QBR", "Lunch?")
_INTERNAL_LINES = ("Can you take a look before Thursday?", "I added my notes to the draft.")
_NEWSLETTERS = (
    ("Cloudly Weekly", "news@updates.cloudly.example", "weekly.cloudly.example"),
    ("DevOps Digest", "digest@lists.devopsdigest.example", "digest.devopsdigest.example"),
)
_PRIVATE = (
    ("Weber, Katharina", "k.weber@weber-legal.example", "Your lease agreement: our comments"),
    ("Maria Rossi", "maria.rossi1957@gmail.example", "Sunday lunch"),
    ("Tom Brennan", "tommy.b@outlook-mail.example", "Photos from the weekend"),
)
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
_QP_UTF8 = Charset("utf-8")
_QP_UTF8.header_encoding = QP
_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@dataclass(frozen=True, slots=True)
class _Person:
    name: str
    address: str
    offset: int = 1
    upn: str | None = None


@dataclass(slots=True)
class _Mail:
    sender: _Person
    to: list[_Person]
    subject: str
    sent: datetime
    lines: list[str]
    cc: list[_Person] = field(default_factory=list)
    bcc: list[_Person] = field(default_factory=list)
    message_id: str | None = None
    references: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    attachment: str | None = None


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
    names = rng.sample([(first, last) for first in _FIRST for last in _LAST], 3 * count)

    companies, regular = [], 0
    for index, (company, stem) in enumerate(picks):
        domain = f"{stem}.example"
        # The first regular company writes from regional subdomains of its listed domain.
        hosts = [f"eu.{domain}", f"us.{domain}"] if regular == 0 and stem != "bücher" else [domain]
        contacts = [
            _contact(first, last, hosts[n % len(hosts)], style=(index + n) % 3)
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
    world = _World(random.Random(seed), tenant_domain, moment, users, companies)

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


def _contact(first: str, last: str, domain: str, *, style: int) -> dict[str, str]:
    """Make a contact; styles: "First Last", "Last, First", "Last, First - City, CC"."""
    plain = f"{first}.{last}".translate(_UNDECOMPOSABLE)
    local = unicodedata.normalize("NFKD", plain).encode("ascii", "ignore").decode()
    names = (f"{first} {last}", f"{last}, {first}", f"{last}, {first} - Berlin, DE")
    return {"email": f"{local.lower()}@{domain}", "name": names[style]}


def _format_name(name: str, rng: random.Random) -> str:
    if name.isascii() and ("," not in name or rng.random() < 0.6):
        specials = re.search(r'[][\\()<>@,:;".]', name)
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"' if specials else name
    if "," in name:
        # An encoded comma (=2C) must never split the address (CASES.md BR-10).
        return _QP_UTF8.header_encode(name)
    return Header(name, "utf-8").encode()


def _address_list(people: list[_Person], rng: random.Random) -> str:
    parts = [f"{_format_name(p.name, rng)} <{p.address}>" if p.name else p.address for p in people]
    return ",\r\n ".join(parts) if sum(map(len, parts)) > 70 else ", ".join(parts)


def _contact_entry(value: Any) -> dict[str, str]:
    """Read a contact in either form the company API takes: an address, or {"email", "name"?}.

    A display name written with the address (``Pat Lee <pat@x.example>``) is used when no name
    is given; without either, the local part stands in for it.
    """
    text, name = (value, "") if isinstance(value, str) else (value["email"], value.get("name"))
    display, address = parseaddr(text)
    return {"email": address or text, "name": name or display or address.partition("@")[0]}


class _World:
    """The state of one generation run: people, mailboxes and the random source."""

    def __init__(
        self,
        rng: random.Random,
        tenant: str,
        now: datetime,
        users: list[tuple[str, str]],
        companies: list[dict[str, Any]],
    ) -> None:
        self.rng, self.tenant, self.now, self.serial = rng, tenant, now, 0
        self.staff = [_Person(name, upn, 1, upn) for upn, name in users]
        self.boxes: dict[str, list[tuple[str, dict[str, Any]]]] = {upn: [] for upn, _ in users}
        contact_lists = [self._contacts_of(company) for company in companies]
        self.customers = [
            [_Person(c["name"], c["email"], rng.choice(_OFFSETS)) for c in contacts]
            for contacts in contact_lists
            if contacts
        ]
        if not self.customers:
            message = f"companies must give at least one domain or contact, got {len(companies)}"
            raise ValueError(message)
        self.domains = [people[0].address.rpartition("@")[2] for people in self.customers]

    def _contacts_of(self, company: dict[str, Any]) -> list[dict[str, str]]:
        """Return a company's contacts, inventing two at its first domain when it lists none."""
        contacts = [_contact_entry(c) for c in company.get("contacts") or []]
        if contacts or not company.get("domains"):
            return contacts
        names = self.rng.sample(_FIRST, 2)
        return [_contact(f, self.rng.choice(_LAST), company["domains"][0], style=0) for f in names]

    def office_hours(self, days: int) -> datetime:
        """Pick a start time between 07:00 and 18:00 UTC within ``days`` before now."""
        day = self.now.astimezone(UTC) - timedelta(days=self.rng.randint(0, days))
        start = day.replace(hour=7, minute=0, second=0, microsecond=0)
        start += timedelta(seconds=self.rng.randint(0, 11 * 3600))
        return start if start < self.now else start - timedelta(days=1)

    def contact(self) -> list[_Person]:
        """Pick a customer company and return its contacts, the first as written in this mail."""
        people = self.rng.choice(self.customers)
        first, roll = self.rng.choice(people), self.rng.random()
        local, _, domain = first.address.partition("@")
        if not domain.isascii() and roll < 0.5:
            domain = domain.encode("idna").decode("ascii")
        elif roll < 0.12:
            local, domain = local.title(), domain.upper()
        written = _Person(first.name, f"{local}@{domain}", first.offset)
        return [written, *[p for p in people if p.address != first.address]]

    def colleague(self, person: _Person) -> _Person | None:
        """Return another user of the tenant, or None when there is only one."""
        others = [p for p in self.staff if p.upn != person.upn]
        return self.rng.choice(others) if others else None

    def new_id(self, sender: _Person) -> str:
        """Make a Message-ID in the style of the sender's mail system."""
        self.serial += 1
        token = f"{self.rng.getrandbits(64):016X}{self.serial:04d}"
        if sender.upn is not None:
            return f"<AM9PR07MB{token}@AM9PR07MB7124.eurprd07.prod.outlook.com>"
        return f"<{token.lower()}@mail.{sender.address.rpartition('@')[2].lower()}>"

    def customer_subject(self) -> str:
        """Pick a customer thread subject."""
        template = self.rng.choice(_CUSTOMER_SUBJECTS)
        return template.format(n=self.rng.randint(1000, 9999), year=self.now.year)

    def reply(self, parent: _Mail, sender: _Person, to: list[_Person], **extra: Any) -> _Mail:
        """Answer ``parent`` a little later, keeping References/In-Reply-To consistent."""
        delay = timedelta(minutes=self.rng.randint(7, 2 * 24 * 60))
        prefix = "" if parent.subject.startswith("RE: ") else "RE: "
        references = [*parent.references, *([parent.message_id] if parent.message_id else [])]
        return _Mail(
            sender,
            to,
            extra.pop("subject", prefix + parent.subject),
            parent.sent + delay,
            extra.pop("lines", [self.rng.choice(_CUSTOMER_LINES)]),
            message_id=self.new_id(sender),
            references=references,
            **extra,
        )

    def compose(self, sender: _Person, to: list[_Person], start: datetime, **extra: Any) -> _Mail:
        """Start a thread with a new mail (a customer subject and lines unless given)."""
        subject = extra.pop("subject", None) or self.customer_subject()
        lines = extra.pop("lines", None) or self.rng.sample(_CUSTOMER_LINES, 2)
        return _Mail(sender, to, subject, start, lines, message_id=self.new_id(sender), **extra)

    def thread_customer_in(self, user: _Person, start: datetime) -> list[_Mail]:
        """A customer writes to the user, who replies; the customer may answer again."""
        contacts = self.contact()
        first = self.compose(contacts[0], [user], start, cc=contacts[1:2])
        answer = self.reply(first, user, [contacts[0]], cc=contacts[1:2])
        mails = [first, answer, self.reply(answer, contacts[0], [user])]
        return mails[: self.rng.randint(1, 3)]

    def thread_customer_out(self, user: _Person, start: datetime) -> list[_Mail]:
        """The user writes to a customer (sometimes with a quote attached or a Bcc'd colleague)."""
        contacts, colleague = self.contact(), self.colleague(user)
        first = self.compose(user, contacts[:1], start)
        if self.rng.random() < 0.3:
            first.attachment = f"Quote-{self.rng.randint(1000, 9999)}.pdf"
        if colleague is not None and self.rng.random() < 0.2:
            first.bcc = [colleague]
        return [first, self.reply(first, contacts[0], [user])][: self.rng.randint(1, 2)]

    def thread_customer_shared(self, user: _Person, start: datetime) -> list[_Mail]:
        """The user writes to a customer with a colleague in Cc; the customer replies to all."""
        colleague = self.colleague(user)
        if colleague is None:
            return self.thread_customer_out(user, start)
        contacts = self.contact()
        first = self.compose(user, contacts[:1], start, cc=[colleague])
        return [first, self.reply(first, contacts[0], [user], cc=[colleague])]

    def thread_internal(self, user: _Person, start: datetime) -> list[_Mail]:
        """Mail among colleagues only."""
        colleague = self.colleague(user)
        if colleague is None:
            return self.thread_customer_in(user, start)
        lines, subject = [self.rng.choice(_INTERNAL_LINES)], self.rng.choice(_INTERNAL)
        first = self.compose(user, [colleague], start, subject=subject, lines=lines)
        return [first, self.reply(first, colleague, [user], lines=["Sure, will do."])]

    def thread_newsletter(self, user: _Person, start: datetime) -> list[_Mail]:
        """A bulk mailing from a vendor or from a customer's marketing subdomain."""
        name, address, list_id = self.rng.choice(_NEWSLETTERS)
        if self.domains and self.rng.random() < 0.3:
            domain = self.rng.choice(self.domains)
            name, address, list_id = "Customer News", f"news@mail.{domain}", f"news.{domain}"
        sender = _Person(name, address, 0)
        headers = [
            ("List-Id", f"{name} <{list_id}>"),
            ("List-Unsubscribe", f"<mailto:unsubscribe@{address.partition('@')[2]}>"),
            ("Precedence", "bulk"),
        ]
        lines = ["This week: new releases, a customer story and upcoming webinars."]
        subject = f"{name}: your update"
        return [self.compose(sender, [user], start, subject=subject, lines=lines, headers=headers)]

    def thread_auto_reply(self, user: _Person, start: datetime) -> list[_Mail]:
        """The user writes to a customer and gets an out-of-office reply."""
        contacts = self.contact()
        first = self.compose(user, contacts[:1], start)
        headers = [("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")]
        lines = ["I am out of the office until Monday with limited access to email."]
        subject = f"Automatic reply: {first.subject}"
        return [
            first,
            self.reply(first, contacts[0], [user], subject=subject, lines=lines, headers=headers),
        ]

    def thread_private(self, user: _Person, start: datetime) -> list[_Mail]:
        """Private mail with the user's lawyer or family."""
        name, address, subject = self.rng.choice(_PRIVATE)
        other = _Person(name, address, 1)
        lines = ["Let me know what you think."]
        first = self.compose(other, [user], start, subject=subject, lines=lines)
        return [first, self.reply(first, user, [other], lines=["Thanks, I will call you tonight."])]

    def thread_system(self, user: _Person, start: datetime) -> list[_Mail]:
        """An invoice from a customer's billing system that sends no Message-ID."""
        contacts = self.contact()
        domain = contacts[0].address.rpartition("@")[2]
        billing = _Person("", f"billing@{domain}", contacts[0].offset)
        subject = f"Invoice {self.rng.randint(10000, 99999)}"
        return [_Mail(billing, [user], subject, start, ["Please find your invoice attached."])]

    def deliver_thread(self, mails: list[_Mail]) -> None:
        """File each mail already sent: Sent Items for the sender, Inbox for each recipient."""
        for mail in mails:
            if mail.sent > self.now:
                return
            if mail.sender.upn is not None:
                self.boxes[mail.sender.upn].append(("sentitems", self._graph(mail, None)))
            delivered = {mail.sender.upn}
            for person in [*mail.to, *mail.cc, *mail.bcc]:
                if person.upn is not None and person.upn not in delivered:
                    delivered.add(person.upn)
                    self.boxes[person.upn].append(("inbox", self._graph(mail, person)))

    def _graph(self, mail: _Mail, recipient: _Person | None) -> dict[str, Any]:
        return graph_message_from_eml(_render(mail, recipient, self.tenant, self.rng))


def _render(mail: _Mail, recipient: _Person | None, tenant: str, rng: random.Random) -> bytes:
    """Write one copy of ``mail`` as raw bytes: Sent Items keeps Bcc, Inbox gains Received."""
    local_time = mail.sent.astimezone(timezone(timedelta(hours=mail.sender.offset)))
    headers: list[tuple[str, str]] = []
    if recipient is not None:
        arrival = format_datetime(
            (mail.sent + timedelta(seconds=rng.randint(2, 90))).astimezone(UTC)
        )
        host = mail.sender.address.rpartition("@")[2].lower()
        hop = f"from mail.{host} by mx.{tenant} with ESMTPS for <{recipient.address}>; {arrival}"
        headers.append(("Received", hop))
    headers += [("From", _address_list([mail.sender], rng)), ("To", _address_list(mail.to, rng))]
    if mail.cc:
        headers.append(("Cc", _address_list(mail.cc, rng)))
    if mail.bcc and recipient is None:
        headers.append(("Bcc", _address_list(mail.bcc, rng)))
    subject = (
        mail.subject
        if mail.subject.isascii()
        else Header(mail.subject, "utf-8").encode(linesep="\r\n")
    )
    headers += [("Subject", subject), ("Date", format_datetime(local_time))]
    if mail.message_id:
        headers.append(("Message-ID", mail.message_id))
    if mail.references:
        headers += [("In-Reply-To", mail.references[-1]), ("References", " ".join(mail.references))]
    head = "".join(f"{name}: {value}\r\n" for name, value in [*headers, *mail.headers])
    return head.encode("utf-8") + _body(mail).as_bytes(policy=SMTP)


def _body(mail: _Mail) -> EmailMessage:
    # "Doe, Jane - City, ST" and "Jane Doe" both greet Jane.
    name = mail.to[0].name.split(" - ")[0]
    greeting = (name.split(",")[-1].split() or ["there"])[0]
    paragraphs = [
        f"Hi {greeting},",
        *mail.lines,
        f"Best regards,<br>{mail.sender.name or 'Billing'}",
    ]
    body = "".join(f"<p>{html.escape(p).replace('&lt;br&gt;', '<br>')}</p>" for p in paragraphs)
    document = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>'
        f'<body><div style="font-family:Calibri,Arial,sans-serif;font-size:11pt">{body}</div>'
        "</body></html>"
    )
    message = EmailMessage()
    message.set_content("\n\n".join(p.replace("<br>", "\n") for p in paragraphs) + "\n")
    message.add_alternative(document, subtype="html")
    if mail.attachment:
        message.add_attachment(
            _PDF, maintype="application", subtype="pdf", filename=mail.attachment
        )
    seed = f"{mail.message_id}{mail.subject}{mail.sent}".encode()
    for depth, part in enumerate(p for p in message.walk() if p.is_multipart()):
        part.set_boundary(f"_{depth:03d}_{zlib.crc32(seed):08x}_boundary_")
    return message
