"""The people and threads of generated mailboxes: who writes to whom, about what, and when.

:class:`World` holds one generation run: the tenant's users, the customers' contacts, one
``random.Random`` and a mailbox per user. Each of its ``thread_*`` methods makes one kind of
thread and :meth:`World.deliver_thread` files each mail of it, rendered by
:mod:`devstack.mailrender` and read back with ``mailload``, into every mailbox it reaches.

The kinds: customer threads in both directions with replies (some with a colleague in Cc or
Bcc, so both mailboxes hold the same ``internetMessageId``: a Sent Items copy for the sender,
an Inbox copy for the colleague), internal mail among colleagues, newsletters (``List-Id``,
``Precedence: bulk``), automatic replies (``Auto-Submitted: auto-replied``), private mail (a
lawyer, family at free-mail domains) and system mail without a Message-ID. Contacts appear with
commas in display names (quoted or RFC 2047-encoded), non-ASCII names, upper-case addresses,
regional subdomains and an IDN domain written in both Unicode and punycode form. Threads start
in office hours within the requested number of days before ``now``.

Known limitations:
    Replies quote nothing: only their References header carries the thread.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from devstack.mailload import graph_message_from_eml
from devstack.mailrender import Mail, Person, render

if TYPE_CHECKING:
    import random

FIRST = ("Jane", "John", "Amara", "Jürgen", "Zoë", "Søren", "Lucía", "Wei", "Priya", "Łukasz")
LAST = ("Doe", "Okafor", "Müller", "Ångström", "Novak", "Tanaka", "García", "Brennan", "Ivanova")
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


def make_contact(first: str, last: str, domain: str, *, style: int) -> dict[str, str]:
    """Make a contact; styles: "First Last", "Last, First", "Last, First - City, CC"."""
    plain = f"{first}.{last}".translate(_UNDECOMPOSABLE)
    local = unicodedata.normalize("NFKD", plain).encode("ascii", "ignore").decode()
    names = (f"{first} {last}", f"{last}, {first}", f"{last}, {first} - Berlin, DE")
    return {"email": f"{local.lower()}@{domain}", "name": names[style]}


def _contact_entry(value: Any) -> dict[str, str]:
    """Read a contact in either form the company API takes: an address, or {"email", "name"?}.

    A display name written with the address (``Pat Lee <pat@x.example>``) is used when no name
    is given; without either, the local part stands in for it.
    """
    text, name = (value, "") if isinstance(value, str) else (value["email"], value.get("name"))
    display, address = parseaddr(text)
    return {"email": address or text, "name": name or display or address.partition("@")[0]}


class World:
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
        self.staff = [Person(name, upn, 1, upn) for upn, name in users]
        self.boxes: dict[str, list[tuple[str, dict[str, Any]]]] = {upn: [] for upn, _ in users}
        contact_lists = [self._contacts_of(company) for company in companies]
        self.customers = [
            [Person(c["name"], c["email"], rng.choice(_OFFSETS)) for c in contacts]
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
        names = self.rng.sample(FIRST, 2)
        return [
            make_contact(f, self.rng.choice(LAST), company["domains"][0], style=0) for f in names
        ]

    def office_hours(self, days: int) -> datetime:
        """Pick a start time between 07:00 and 18:00 UTC within ``days`` before now."""
        day = self.now.astimezone(UTC) - timedelta(days=self.rng.randint(0, days))
        start = day.replace(hour=7, minute=0, second=0, microsecond=0)
        start += timedelta(seconds=self.rng.randint(0, 11 * 3600))
        return start if start < self.now else start - timedelta(days=1)

    def contact(self) -> list[Person]:
        """Pick a customer company and return its contacts, the first as written in this mail."""
        people = self.rng.choice(self.customers)
        first, roll = self.rng.choice(people), self.rng.random()
        local, _, domain = first.address.partition("@")
        if not domain.isascii() and roll < 0.5:
            domain = domain.encode("idna").decode("ascii")
        elif roll < 0.12:
            local, domain = local.title(), domain.upper()
        written = Person(first.name, f"{local}@{domain}", first.offset)
        return [written, *[p for p in people if p.address != first.address]]

    def colleague(self, person: Person) -> Person | None:
        """Return another user of the tenant, or None when there is only one."""
        others = [p for p in self.staff if p.upn != person.upn]
        return self.rng.choice(others) if others else None

    def new_id(self, sender: Person) -> str:
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

    def reply(self, parent: Mail, sender: Person, to: list[Person], **extra: Any) -> Mail:
        """Answer ``parent`` a little later, keeping References/In-Reply-To consistent."""
        delay = timedelta(minutes=self.rng.randint(7, 2 * 24 * 60))
        prefix = "" if parent.subject.startswith("RE: ") else "RE: "
        references = [*parent.references, *([parent.message_id] if parent.message_id else [])]
        return Mail(
            sender,
            to,
            extra.pop("subject", prefix + parent.subject),
            parent.sent + delay,
            extra.pop("lines", [self.rng.choice(_CUSTOMER_LINES)]),
            message_id=self.new_id(sender),
            references=references,
            **extra,
        )

    def compose(self, sender: Person, to: list[Person], start: datetime, **extra: Any) -> Mail:
        """Start a thread with a new mail (a customer subject and lines unless given)."""
        subject = extra.pop("subject", None) or self.customer_subject()
        lines = extra.pop("lines", None) or self.rng.sample(_CUSTOMER_LINES, 2)
        return Mail(sender, to, subject, start, lines, message_id=self.new_id(sender), **extra)

    def thread_customer_in(self, user: Person, start: datetime) -> list[Mail]:
        """A customer writes to the user, who replies; the customer may answer again."""
        contacts = self.contact()
        first = self.compose(contacts[0], [user], start, cc=contacts[1:2])
        answer = self.reply(first, user, [contacts[0]], cc=contacts[1:2])
        mails = [first, answer, self.reply(answer, contacts[0], [user])]
        return mails[: self.rng.randint(1, 3)]

    def thread_customer_out(self, user: Person, start: datetime) -> list[Mail]:
        """The user writes to a customer (sometimes with a quote attached or a Bcc'd colleague)."""
        contacts, colleague = self.contact(), self.colleague(user)
        first = self.compose(user, contacts[:1], start)
        if self.rng.random() < 0.3:
            first.attachment = f"Quote-{self.rng.randint(1000, 9999)}.pdf"
        if colleague is not None and self.rng.random() < 0.2:
            first.bcc = [colleague]
        return [first, self.reply(first, contacts[0], [user])][: self.rng.randint(1, 2)]

    def thread_customer_shared(self, user: Person, start: datetime) -> list[Mail]:
        """The user writes to a customer with a colleague in Cc; the customer replies to all."""
        colleague = self.colleague(user)
        if colleague is None:
            return self.thread_customer_out(user, start)
        contacts = self.contact()
        first = self.compose(user, contacts[:1], start, cc=[colleague])
        return [first, self.reply(first, contacts[0], [user], cc=[colleague])]

    def thread_internal(self, user: Person, start: datetime) -> list[Mail]:
        """Mail among colleagues only."""
        colleague = self.colleague(user)
        if colleague is None:
            return self.thread_customer_in(user, start)
        lines, subject = [self.rng.choice(_INTERNAL_LINES)], self.rng.choice(_INTERNAL)
        first = self.compose(user, [colleague], start, subject=subject, lines=lines)
        return [first, self.reply(first, colleague, [user], lines=["Sure, will do."])]

    def thread_newsletter(self, user: Person, start: datetime) -> list[Mail]:
        """A bulk mailing from a vendor or from a customer's marketing subdomain."""
        name, address, list_id = self.rng.choice(_NEWSLETTERS)
        if self.domains and self.rng.random() < 0.3:
            domain = self.rng.choice(self.domains)
            name, address, list_id = "Customer News", f"news@mail.{domain}", f"news.{domain}"
        sender = Person(name, address, 0)
        headers = [
            ("List-Id", f"{name} <{list_id}>"),
            ("List-Unsubscribe", f"<mailto:unsubscribe@{address.partition('@')[2]}>"),
            ("Precedence", "bulk"),
        ]
        lines = ["This week: new releases, a customer story and upcoming webinars."]
        subject = f"{name}: your update"
        return [self.compose(sender, [user], start, subject=subject, lines=lines, headers=headers)]

    def thread_auto_reply(self, user: Person, start: datetime) -> list[Mail]:
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

    def thread_private(self, user: Person, start: datetime) -> list[Mail]:
        """Private mail with the user's lawyer or family."""
        name, address, subject = self.rng.choice(_PRIVATE)
        other = Person(name, address, 1)
        lines = ["Let me know what you think."]
        first = self.compose(other, [user], start, subject=subject, lines=lines)
        return [first, self.reply(first, user, [other], lines=["Thanks, I will call you tonight."])]

    def thread_system(self, user: Person, start: datetime) -> list[Mail]:
        """An invoice from a customer's billing system that sends no Message-ID."""
        contacts = self.contact()
        domain = contacts[0].address.rpartition("@")[2]
        billing = Person("", f"billing@{domain}", contacts[0].offset)
        subject = f"Invoice {self.rng.randint(10000, 99999)}"
        return [Mail(billing, [user], subject, start, ["Please find your invoice attached."])]

    def deliver_thread(self, mails: list[Mail]) -> None:
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

    def _graph(self, mail: Mail, recipient: Person | None) -> dict[str, Any]:
        return graph_message_from_eml(render(mail, recipient, self.tenant, self.rng))
