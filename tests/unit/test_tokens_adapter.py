"""Unit tests for the MSAL error mapping in shared.adapters.tokens.

MSAL itself runs in the functional tests against the Microsoft 365 simulator; here only the
translation of MSAL's error dicts into the product's exceptions is checked.
"""

from __future__ import annotations

import pytest

from shared.adapters.tokens import _token_error
from shared.errors import ReauthRequiredError, TransientError


@pytest.mark.parametrize("aadsts", [50173, 65001, 70008, 700082])
def test_token_error_invalid_grant_requires_reauth_with_code(aadsts):
    """``invalid_grant`` with a consent-ending AADSTS code asks the user to consent again."""
    # GIVEN MSAL's answer to a refresh Microsoft refused
    result = {
        "error": "invalid_grant",
        "error_description": f"AADSTS{aadsts}: refused for user@customer.example",
        "error_codes": [aadsts],
    }

    # WHEN it is translated
    error = _token_error(result)

    # THEN it is ReauthRequiredError whose code names the error and the AADSTS code
    assert isinstance(error, ReauthRequiredError)
    assert error.code == f"invalid_grant:{aadsts}"


def test_token_error_interaction_required_requires_reauth():
    """``interaction_required`` without codes asks the user to consent again."""
    # GIVEN MSAL's answer when conditional access wants the user
    result = {"error": "interaction_required", "error_description": "AADSTS50079"}

    # WHEN it is translated
    error = _token_error(result)

    # THEN it is ReauthRequiredError with the error as its code
    assert isinstance(error, ReauthRequiredError)
    assert error.code == "interaction_required"


def test_token_error_reauth_code_under_other_error_requires_reauth():
    """A consent-ending AADSTS code counts even when the OAuth error name is another one."""
    # GIVEN an answer whose error name is generic but whose code needs MFA again
    result = {"error": "invalid_request", "error_codes": ["50076"]}

    # WHEN it is translated
    error = _token_error(result)

    # THEN it is ReauthRequiredError
    assert isinstance(error, ReauthRequiredError)
    assert error.code == "invalid_request:50076"


@pytest.mark.parametrize(
    "result",
    [
        {"error": "temporarily_unavailable", "error_codes": [50196]},
        {"error": "temporarily_unavailable"},
        {"error": "server_error", "error_codes": [90033]},
    ],
    ids=["throttled", "no-codes", "server-error"],
)
def test_token_error_temporary_failure_is_transient(result):
    """Identity-platform failures a retry can fix become TransientError."""
    # GIVEN MSAL's answer to a refresh that failed on Microsoft's side

    # WHEN it is translated
    error = _token_error(result)

    # THEN it is TransientError naming the error
    assert isinstance(error, TransientError)
    assert str(result["error"]) in str(error)


def test_token_error_message_leaves_out_the_description():
    """The description, which can hold the user's address, never reaches the message."""
    # GIVEN an answer whose description names the user
    result = {
        "error": "invalid_grant",
        "error_description": "AADSTS70008: grant for user@customer.example expired",
        "error_codes": [70008],
    }

    # WHEN it is translated
    error = _token_error(result)

    # THEN the message keeps the error and code but not the address
    assert "user@customer.example" not in str(error)
    assert "70008" in str(error)
