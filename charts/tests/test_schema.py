"""values.schema.json: the defaults and every ci/*.yaml pass; a wrong type or
an unknown key in a strict section is refused, with a message that names the
key and what is wrong."""

from __future__ import annotations

import json

import helm_python as helm
import pytest

import chartlib

# Helm's message for each file in bad-values/, line by line after the header.
EXPECTED_ERRORS = {
    "wrong-type.yaml": ["- at '/collector/port': got string, want integer"],
    "bad-retention-size.yaml": [
        "- at '/collector/retentionSize': '2 parsecs' does not match pattern "
        "'^(|off|[0-9]+(\\\\.[0-9]+)?(B|[kKMGT]B?|[KMGT]iB?)?)$'"
    ],
    "unknown-key.yaml": ["- at '/agent/spool': additional properties 'sizeLimit' not allowed"],
    "short-lived-agent-token.yaml": [
        "- at '/auth/agentCredential': value must be one of 'serviceAccountToken', 'sharedToken'",
        "- at '/auth/serviceAccountToken/expirationSeconds': minimum: got 60, want 600",
    ],
    "privileged.yaml": [
        "- at '/agent/capabilities/0': value must be 'SYS_PTRACE'",
        "- at '/agent': additional properties 'privileged' not allowed",
    ],
    "privileged-security-context.yaml": [
        "- at '/agent/containerSecurityContext/privileged': value must be false",
        "- at '/collector/containerSecurityContext': validation failed",
        "- at '/collector/containerSecurityContext/allowPrivilegeEscalation': value must be false",
        "- at '/collector/containerSecurityContext/capabilities/add/0': value must be 'NET_BIND_SERVICE'",
    ],
    "networkpolicy-typo.yaml": [
        "- at '/networkPolicy/agents/nodeCIDRs/0': '192.168.1.0' does not match pattern "
        "'^([0-9]{1,3}(\\\\.[0-9]{1,3}){3}/[0-9]{1,2}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*/[0-9]{1,3})$'",
        "- at '/networkPolicy/readers/0': additional properties 'podselector' not allowed",
    ],
}


def test_every_bad_values_file_has_an_expectation():
    assert sorted(p.name for p in chartlib.BAD_VALUES_DIR.glob("*.yaml")) == sorted(EXPECTED_ERRORS)


@pytest.mark.parametrize("file_name", sorted(EXPECTED_ERRORS))
def test_bad_values_are_refused_with_a_clear_error(file_name):
    values = chartlib.load_values(chartlib.BAD_VALUES_DIR / file_name)
    with pytest.raises(helm.HelmValuesError) as refused:
        chartlib.render(values)
    message = str(refused.value)
    print(f"{file_name}:\n{message}")
    lines = [line.strip() for line in message.strip().splitlines()]
    assert lines[0] == "values don't meet the specifications of the schema(s) in the following chart(s):"
    assert lines[1] == "bakery:"
    assert sorted(lines[2:]) == sorted(EXPECTED_ERRORS[file_name])


@pytest.mark.parametrize("file_name", sorted(EXPECTED_ERRORS))
def test_lint_reports_the_same_error(file_name):
    report = chartlib.lint(chartlib.load_values(chartlib.BAD_VALUES_DIR / file_name))
    errors = [m for m in report["messages"] if m["severity"] == 3 and m["path"] == "values.yaml"]
    assert len(errors) == 1
    for expected in EXPECTED_ERRORS[file_name]:
        assert expected in errors[0]["error"]


def test_defaults_and_ci_variants_pass_the_schema():
    with helm.Chart.load(str(chartlib.CHART_DIR)) as chart:
        for name, values in chartlib.variants():
            chart.validate_schema(chart.merge_values(values))


def test_every_default_key_is_described_by_the_schema():
    """additionalProperties: false everywhere but in free-form maps, so the
    defaults passing proves no key of values.yaml is unknown to the schema;
    this checks the schema is strict where the chart's own settings live."""
    schema = json.loads((chartlib.CHART_DIR / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    for section in ("image", "auth", "tls", "agent", "collector", "rbac", "networkPolicy", "dashboards", "tests"):
        assert schema["properties"][section]["additionalProperties"] is False, section
    agent = schema["properties"]["agent"]["properties"]
    assert agent["spool"]["additionalProperties"] is False
    assert agent["updateStrategy"]["additionalProperties"] is False
    # the security contexts and the service accounts are strict too
    for name in ("podSecurityContext", "agentContainerSecurityContext", "collectorContainerSecurityContext",
                 "serviceAccount", "networkPolicyPeers"):
        definition = schema["$defs"][name]
        assert (definition.get("items") or definition)["additionalProperties"] is False, name
