"""Decide whether a message is mail with a customer, and with which companies.

A participant belongs to a company when it is one of the company's known contacts, or when
its domain is one of the company's related domains or a subdomain of one. The tenant's own
domains never count: a related domain at or under an own domain and a known contact at an
own domain are left out of the index, and an address at or under an own domain matches no
company.

Known limitations: there is no public suffix list, so a related domain such as ``co.uk``
matches every address under it. Index entries that are not valid domains or addresses are
skipped and listed, by field path, in :attr:`CompanyIndex.rejected`; they match nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.errors import ValidationError
from shared.matching.addresses import normalize_domain, parse_address

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from shared.matching.addresses import Address

__all__ = [
    "DROP_INTERNAL",
    "DROP_NO_CUSTOMER",
    "DROP_NO_PARTICIPANTS",
    "KEEP_CUSTOMER",
    "CompanyIndex",
    "CompanyMatchData",
    "Decision",
    "classify",
]

KEEP_CUSTOMER = "customer"
DROP_NO_PARTICIPANTS = "no_participants"
DROP_INTERNAL = "internal_only"
DROP_NO_CUSTOMER = "no_customer"

_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class CompanyMatchData:
    """What the index needs to know about one company: its related domains and contacts."""

    company_id: str
    domains: tuple[str, ...] = ()
    contacts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to keep a message, the companies it belongs to, and a reason code."""

    keep: bool
    company_ids: frozenset[str]
    reason: str


@dataclass(frozen=True, slots=True)
class CompanyIndex:
    """Lookup tables from domains and contact addresses to company ids; build with ``build``.

    Attributes:
        by_domain: normalised related domain to the ids of the companies that list it.
        by_contact: normalised contact address to the ids of the companies that list it.
        own_domains: the tenant's own domains, normalised.
        rejected: field paths of skipped entries, such as ``companies[acme].domains[1]``.
    """

    by_domain: Mapping[str, frozenset[str]]
    by_contact: Mapping[str, frozenset[str]]
    own_domains: frozenset[str]
    rejected: tuple[str, ...] = field(default=())

    @classmethod
    def build(
        cls, companies: Iterable[CompanyMatchData], own_domains: Iterable[str]
    ) -> CompanyIndex:
        """Normalise and index every company's domains and contacts, leaving own domains out.

        Invalid entries never stop the build: they are skipped and named in ``rejected``.
        """
        rejected: list[str] = []
        own = frozenset(_valid_domains(own_domains, "own_domains", rejected))
        by_domain: defaultdict[str, set[str]] = defaultdict(set)
        by_contact: defaultdict[str, set[str]] = defaultdict(set)

        for position, company in enumerate(companies):
            if not company.company_id:
                rejected.append(f"companies[{position}].company_id")
                continue
            path = f"companies[{company.company_id}]"
            for domain in _valid_domains(company.domains, f"{path}.domains", rejected):
                if not _is_under(domain, own):
                    by_domain[domain].add(company.company_id)
            for address in _valid_contacts(company.contacts, f"{path}.contacts", rejected):
                if not _is_under(address.domain, own):
                    by_contact[address.address].add(company.company_id)

        return cls(_freeze(by_domain), _freeze(by_contact), own, tuple(rejected))

    def companies_for(self, address: Address) -> frozenset[str]:
        """Return the ids of the companies an address belongs to; none for own-domain addresses."""
        found = set(self.by_contact.get(address.address, _NONE))
        for suffix in _suffixes(address.domain):
            if suffix in self.own_domains:
                return _NONE
            found.update(self.by_domain.get(suffix, _NONE))
        return frozenset(found)

    def is_own(self, address: Address) -> bool:
        """Return whether the address is at, or under, one of the tenant's own domains."""
        return _is_under(address.domain, self.own_domains)


def classify(participants: Sequence[Address], index: CompanyIndex) -> Decision:
    """Decide whether a message with these participants is kept, and for which companies."""
    if not participants:
        return Decision(keep=False, company_ids=_NONE, reason=DROP_NO_PARTICIPANTS)

    external = [address for address in participants if not index.is_own(address)]
    if not external:
        return Decision(keep=False, company_ids=_NONE, reason=DROP_INTERNAL)

    company_ids = frozenset().union(*(index.companies_for(address) for address in external))
    if not company_ids:
        return Decision(keep=False, company_ids=_NONE, reason=DROP_NO_CUSTOMER)
    return Decision(keep=True, company_ids=company_ids, reason=KEEP_CUSTOMER)


def _suffixes(domain: str) -> Iterator[str]:
    """Yield the domain and each parent that still has two labels, most specific first."""
    labels = domain.split(".")
    for start in range(len(labels) - 1):
        yield ".".join(labels[start:])


def _is_under(domain: str, parents: frozenset[str]) -> bool:
    """Return whether the domain equals, or is a subdomain of, one of the parents."""
    return any(suffix in parents for suffix in _suffixes(domain))


def _valid_domains(values: Iterable[str], path: str, rejected: list[str]) -> Iterator[str]:
    """Yield the normalised valid domains, recording the path of each invalid one."""
    for position, value in enumerate(values):
        try:
            yield normalize_domain(value, f"{path}[{position}]")
        except ValidationError as error:
            rejected.append(error.field)


def _valid_contacts(values: Iterable[str], path: str, rejected: list[str]) -> Iterator[Address]:
    """Yield the parsed valid contact addresses, recording the path of each invalid one."""
    for position, value in enumerate(values):
        address = parse_address(value)
        if address is None:
            rejected.append(f"{path}[{position}]")
        else:
            yield address


def _freeze(table: Mapping[str, set[str]]) -> dict[str, frozenset[str]]:
    """Turn the sets built while indexing into frozensets."""
    return {key: frozenset(ids) for key, ids in table.items()}
