"""Unit tests for host.json parsing, local settings loading and %NAME% expressions."""

import json

import pytest

from devstack.host.errors import HostConfigError
from devstack.host.hostconfig import (
    HostConfig,
    load_local_settings,
    parse_timespan,
    resolve_expression,
)


def test_hostconfig_defaults_match_the_real_host_locally():
    """An empty host.json gives the documented defaults (2 s polling when local)."""
    # GIVEN / WHEN an empty document is parsed
    config = HostConfig.from_dict({})

    # THEN every default is the real host's
    assert config.route_prefix == "api"
    assert config.queues.batch_size == 16
    assert config.queues.new_batch_threshold == 8
    assert config.queues.max_concurrency == 24
    assert config.queues.visibility_timeout_s == 0
    assert config.queues.max_dequeue_count == 5
    assert config.queues.max_polling_interval_s == 2.0
    assert config.queues.message_encoding == "base64"


def test_hostconfig_reads_queue_and_http_settings():
    """Values under extensions.http and extensions.queues override the defaults."""
    # GIVEN a host.json with every supported setting
    data = {
        "functionTimeout": "00:10:00",
        "extensions": {
            "http": {"routePrefix": "/v1/"},
            "queues": {
                "batchSize": 8,
                "maxDequeueCount": 3,
                "visibilityTimeout": "00:00:30",
                "maxPollingInterval": "00:00:00.250",
                "messageEncoding": "None",
            },
        },
    }

    # WHEN it is parsed
    config = HostConfig.from_dict(data)

    # THEN each value is honoured and the threshold follows the batch size
    assert config.route_prefix == "v1"
    assert config.function_timeout_s == 600
    assert config.queues.batch_size == 8
    assert config.queues.new_batch_threshold == 4
    assert config.queues.max_dequeue_count == 3
    assert config.queues.visibility_timeout_s == 30
    assert config.queues.max_polling_interval_s == 0.25
    assert config.queues.message_encoding == "none"


def test_hostconfig_empty_route_prefix_serves_from_the_root():
    """An empty routePrefix is kept empty rather than replaced by the default."""
    # GIVEN / WHEN a host.json with an empty prefix is parsed
    config = HostConfig.from_dict({"extensions": {"http": {"routePrefix": ""}}})

    # THEN the prefix is empty
    assert config.route_prefix == ""


def test_hostconfig_unbounded_function_timeout():
    """functionTimeout -1 means no timeout."""
    # GIVEN / WHEN / THEN
    assert HostConfig.from_dict({"functionTimeout": "-1"}).function_timeout_s is None


def test_hostconfig_lists_every_invalid_setting_at_once():
    """Several bad values are all reported in one HostConfigError."""
    # GIVEN a host.json with three bad queue settings
    data = {
        "extensions": {
            "queues": {"batchSize": 64, "messageEncoding": "utf8", "visibilityTimeout": "soon"}
        }
    }

    # WHEN / THEN one error names all three
    with pytest.raises(HostConfigError) as raised:
        HostConfig.from_dict(data)
    for name in ("batchSize", "messageEncoding", "visibilityTimeout"):
        assert name in str(raised.value)


def test_hostconfig_from_file_rejects_broken_json(tmp_path):
    """A host.json that is not JSON is a start-up error naming the file."""
    # GIVEN a broken file
    path = tmp_path / "host.json"
    path.write_text("{not json", encoding="utf-8")

    # WHEN / THEN it is refused with its path
    with pytest.raises(HostConfigError, match=r"host\.json"):
        HostConfig.from_file(path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:00:01", 1.0), ("00:01:30", 90.0), ("1.02:00:00", 93600.0), ("00:00:00.100", 0.1)],
)
def test_hostconfig_parse_timespan_reads_dotnet_timespans(text, seconds):
    """.NET timespans with days and fractions convert to seconds."""
    # GIVEN / WHEN / THEN
    assert parse_timespan(text) == pytest.approx(seconds)


def test_hostconfig_local_settings_never_override_the_environment(tmp_path):
    """Values from local.settings.json fill gaps but never replace set variables."""
    # GIVEN a settings file and an environment that already sets one of its names
    path = tmp_path / "local.settings.json"
    values = {"Values": {"QUEUE": "from-file", "OTHER": "file-only"}}
    path.write_text(json.dumps(values), encoding="utf-8")
    environ = {"QUEUE": "from-env"}

    # WHEN the file is loaded
    copied = load_local_settings(path, environ)

    # THEN only the missing name was copied
    assert environ == {"QUEUE": "from-env", "OTHER": "file-only"}
    assert copied == ["OTHER"]


def test_hostconfig_resolve_expression_substitutes_settings():
    """%NAME% expressions in binding values resolve from the app settings."""
    # GIVEN settings with a queue name
    settings = {"JOBS_QUEUE": "sync-jobs"}

    # WHEN / THEN the expression is replaced and an undefined one is a named error
    assert resolve_expression("%JOBS_QUEUE%", settings, where="f") == "sync-jobs"
    with pytest.raises(HostConfigError, match="%MISSING%"):
        resolve_expression("%MISSING%", settings, where="queue function 'f'")
