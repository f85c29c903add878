"""Unit tests for shared.matching.companies."""

from __future__ import annotations

import time

from shared.matching.addresses import Address, parse_address
from shared.matching.companies import (
    DROP_INTERNAL,
    DROP_NO_CUSTOMER,
    DROP_NO_PARTICIPANTS,
    KEEP_CUSTOMER,
    CompanyIndex,
    CompanyMatchData,
    Decision,
    classify,
)

OWN_DOMAINS = ("vendor.example", "Vendor-Group.EXAMPLE")

ACME = CompanyMatchData("acme", domains=("acme.example", "ACME-Shop.example."))
BUECHER = CompanyMatchData("buecher", domains=("bücher.example",))
CUSTOMER = CompanyMatchData(
    "customer", domains=("customer.example",), contacts=("Boss.Customer@FreeMail.example",)
)
RESELLER = CompanyMatchData("reseller", domains=("customer.example",))


def _index(*companies: CompanyMatchData) -> CompanyIndex:
    """Build an index of the given companies with the tenant's own domains."""
    return CompanyIndex.build(companies, OWN_DOMAINS)


def _address(value: str) -> Address:
    """Parse an address that the test knows to be valid."""
    address = parse_address(value)
    assert address is not None
    return address


def test_companies_for_matches_related_domain_case_insensitively():
    """An address at a related domain matches whatever case either side uses."""
    # GIVEN an index with customer.example
    index = _index(CUSTOMER)

    # WHEN an upper-case address at that domain is looked up
    companies = index.companies_for(_address("Jane.Doe@Customer.EXAMPLE"))

    # THEN the company is found
    assert companies == {"customer"}


def test_companies_for_matches_idn_domain_in_both_forms():
    """Unicode and A-label forms of an IDN domain match the same company (BR-10 input 4)."""
    # GIVEN a company whose related domain is typed in Unicode
    index = _index(BUECHER)

    # WHEN an address is looked up in each form
    unicode_form = index.companies_for(_address("user@bücher.example"))
    ascii_form = index.companies_for(_address("user@xn--bcher-kva.example"))

    # THEN both match the company
    assert unicode_form == ascii_form == {"buecher"}


def test_companies_for_matches_subdomains_of_related_domain():
    """An address at a subdomain, at any depth, matches the related domain."""
    # GIVEN an index with acme.example
    index = _index(ACME)

    # WHEN addresses one and two levels below each related domain are looked up
    one_level = index.companies_for(_address("a@eu.acme.example"))
    two_levels = index.companies_for(_address("a@mail.eu.acme-shop.example"))

    # THEN both match
    assert one_level == two_levels == {"acme"}


def test_companies_for_ignores_look_alike_domain():
    """A domain that merely ends with the same letters is not a subdomain."""
    # GIVEN an index with acme.example
    index = _index(ACME)

    # WHEN look-alike addresses are looked up
    prefixed = index.companies_for(_address("a@notacme.example"))
    embedded = index.companies_for(_address("a@acme.example.evil.example"))

    # THEN neither matches
    assert prefixed == embedded == frozenset()


def test_companies_for_returns_every_company_sharing_a_domain():
    """Several companies listing one domain are all returned for an address there."""
    # GIVEN two companies with customer.example
    index = _index(CUSTOMER, RESELLER)

    # WHEN an address at that domain is looked up
    companies = index.companies_for(_address("ops@customer.example"))

    # THEN both companies are found
    assert companies == {"customer", "reseller"}


def test_companies_for_matches_known_contact_at_free_mail_domain():
    """A known contact matches by exact address, not by the free-mail domain."""
    # GIVEN a company with a contact at freemail.example
    index = _index(CUSTOMER)

    # WHEN the contact and a stranger at the same domain are looked up
    contact = index.companies_for(_address("boss.customer@freemail.example"))
    stranger = index.companies_for(_address("someone@freemail.example"))

    # THEN only the contact matches
    assert contact == {"customer"}
    assert stranger == frozenset()


def test_companies_for_combines_contact_and_domain_matches():
    """An address that is one company's contact and at another's domain matches both."""
    # GIVEN a company whose contact sits at another company's related domain
    partner = CompanyMatchData("partner", contacts=("ops@acme.example",))
    index = _index(ACME, partner)

    # WHEN that address is looked up
    companies = index.companies_for(_address("ops@acme.example"))

    # THEN both companies are found
    assert companies == {"acme", "partner"}


def test_build_ignores_own_domain_listed_as_related_domain():
    """A related domain at or under an own domain never matches."""
    # GIVEN a company listing the tenant's own domain and a subdomain of it
    careless = CompanyMatchData("careless", domains=("Vendor.example", "sales.vendor.example"))
    index = _index(careless)

    # WHEN addresses at both domains are looked up
    own = index.companies_for(_address("ann@vendor.example"))
    sub = index.companies_for(_address("bob@sales.vendor.example"))

    # THEN nothing matches and nothing was indexed
    assert own == sub == frozenset()
    assert index.by_domain == {}


def test_build_ignores_contact_at_own_domain():
    """A known contact at an own domain never matches."""
    # GIVEN a company listing a colleague as its contact
    careless = CompanyMatchData("careless", contacts=("ann@vendor-group.example",))
    index = _index(careless)

    # WHEN the colleague is looked up
    companies = index.companies_for(_address("ann@vendor-group.example"))

    # THEN nothing matches
    assert companies == frozenset()


def test_companies_for_ignores_own_subdomain_under_related_parent():
    """An own domain below a related domain still never counts as a customer."""
    # GIVEN a company whose related domain is the parent of an own domain
    holding = CompanyMatchData("holding", domains=("group.example",))
    index = CompanyIndex.build([holding], ["vendor.group.example"])

    # WHEN a colleague and a real holding address are looked up
    colleague = index.companies_for(_address("ann@mail.vendor.group.example"))
    customer = index.companies_for(_address("cfo@group.example"))

    # THEN only the holding address matches
    assert colleague == frozenset()
    assert customer == {"holding"}


def test_build_records_invalid_entries_and_keeps_the_rest():
    """Invalid domains, contacts and ids are skipped and named by field path."""
    # GIVEN companies with some broken entries and a broken own domain
    broken = CompanyMatchData("broken", domains=("not a domain", "ok.example"), contacts=("x",))
    nameless = CompanyMatchData("", domains=("nameless.example",))
    index = CompanyIndex.build([broken, nameless], ["vendor.example", "http://x"])

    # WHEN the valid domain is looked up
    companies = index.companies_for(_address("a@ok.example"))

    # THEN the valid entry works and every broken one is listed
    assert companies == {"broken"}
    assert index.rejected == (
        "own_domains[1]",
        "companies[broken].domains[0]",
        "companies[broken].contacts[0]",
        "companies[1].company_id",
    )


def test_is_own_covers_own_domains_and_their_subdomains():
    """Own domains and their subdomains are own; look-alikes are not."""
    # GIVEN an index with the tenant's own domains
    index = _index()

    # WHEN addresses are checked
    own = index.is_own(_address("ann@VENDOR.example"))
    sub = index.is_own(_address("ann@eu.vendor-group.example"))
    look_alike = index.is_own(_address("ann@myvendor.example"))

    # THEN only the first two are own
    assert (own, sub, look_alike) == (True, True, False)


def test_classify_keeps_customer_mail_with_its_companies():
    """A message with a customer participant is kept with the matching companies."""
    # GIVEN a colleague writing to a customer and to a reseller address
    index = _index(CUSTOMER, RESELLER, ACME)
    participants = [_address("ann@vendor.example"), _address("ops@customer.example")]

    # WHEN it is classified
    decision = classify(participants, index)

    # THEN it is kept for both companies at that domain
    assert decision == Decision(True, frozenset({"customer", "reseller"}), KEEP_CUSTOMER)


def test_classify_drops_message_without_participants():
    """A message with no participants is dropped with its own reason."""
    # GIVEN no participants
    # WHEN it is classified
    decision = classify([], _index(CUSTOMER))

    # THEN it is dropped
    assert decision == Decision(False, frozenset(), DROP_NO_PARTICIPANTS)


def test_classify_drops_internal_mail():
    """Mail among colleagues only is internal, even when a company lists an own domain."""
    # GIVEN colleagues at both own domains and a company that lists one of them
    careless = CompanyMatchData("careless", domains=("vendor.example",))
    participants = [_address("ann@vendor.example"), _address("bob@hr.vendor-group.example")]

    # WHEN it is classified
    decision = classify(participants, _index(careless))

    # THEN it is dropped as internal
    assert decision == Decision(False, frozenset(), DROP_INTERNAL)


def test_classify_drops_external_mail_without_customer():
    """Mail with outsiders who are not customers is dropped."""
    # GIVEN a colleague writing to a stranger at a free-mail domain
    participants = [_address("ann@vendor.example"), _address("friend@freemail.example")]

    # WHEN it is classified
    decision = classify(participants, _index(CUSTOMER, ACME))

    # THEN it is dropped as having no customer
    assert decision == Decision(False, frozenset(), DROP_NO_CUSTOMER)


def test_classify_scales_to_ten_thousand_companies():
    """An index of 10,000 companies with 3 domains each builds and answers quickly."""
    # GIVEN 10,000 companies, three related domains each, one of them Unicode
    companies = [
        CompanyMatchData(f"c{n}", domains=(f"a{n}.example", f"b{n}.example", f"büro{n}.example"))
        for n in range(10_000)
    ]
    started = time.perf_counter()
    index = CompanyIndex.build(companies, OWN_DOMAINS)
    built = time.perf_counter() - started
    addresses = [_address(f"x@mail.eu.b{n}.example") for n in range(10_000)]

    # WHEN 10,000 messages are classified
    started = time.perf_counter()
    decisions = [classify([address], index) for address in addresses]
    classified = time.perf_counter() - started

    # THEN every message finds its company, well within a generous time budget
    assert [decision.company_ids for decision in decisions[:2]] == [{"c0"}, {"c1"}]
    assert all(decision.keep for decision in decisions)
    assert len(index.by_domain) == 30_000
    assert built < 5.0
    assert classified < 2.0
