"""infra/main.bicep wires its modules as they are declared, as the Bicep compiler would insist.

The development machines have no Bicep CLI, so these checks stand in for the compiler's: every
module gets each parameter it requires and none it lacks, only declared outputs are read, and the
azd parameters file and service name match what the Bicep declares.
"""

from __future__ import annotations

import json
import re
from functools import cache
from itertools import takewhile
from pathlib import Path
from typing import Any

from pycep import BicepParser

from tests.unit.infra import INFRA, ROOT

MAIN = INFRA / "main.bicep"
PARAMETERS = INFRA / "main.parameters.json"
AZURE_YAML = ROOT / "azure.yaml"
OUTPUT_IN_TEXT = re.compile(r"\b(\w+)\.outputs\.(\w+)")


@cache
def _parsed(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def _modules() -> dict[str, tuple[Path, dict[str, Any]]]:
    """Return main.bicep's modules: symbol -> (module file, parameters passed)."""
    modules = _parsed(MAIN).get("modules") or {}
    return {
        symbol: (
            (MAIN.parent / module["detail"]["path"]).resolve(),
            module["config"].get("params") or {},
        )
        for symbol, module in modules.items()
    }


def _declared_parameters(path: Path) -> dict[str, bool]:
    """Return a module's parameters, each with whether it must be passed (it has no default)."""
    parameters = _parsed(path).get("parameters") or {}
    return {name: spec.get("default") is None for name, spec in parameters.items()}


def _output_reads(node: object) -> set[tuple[str, str]]:
    """Return every (module symbol, output name) read by ``<module>.outputs.<name>``."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, str):
        return set(OUTPUT_IN_TEXT.findall(node))
    if isinstance(node, list):
        for item in node:
            found |= _output_reads(item)
        return found
    if not isinstance(node, dict):
        return found
    operands = (node.get("operator") or {}).get("operands") or {}
    inner = operands.get("operand_2") if isinstance(operands, dict) else None
    if isinstance(operands.get("operand_1"), str) and isinstance(inner, dict):
        accessor = (inner.get("operator") or {}).get("operands") or {}
        if accessor.get("operand_1") == "outputs" and isinstance(accessor.get("operand_2"), str):
            found.add((operands["operand_1"], accessor["operand_2"]))
    for value in node.values():
        found |= _output_reads(value)
    return found


def test_main_passes_every_required_module_parameter():
    """Each module gets every parameter it declares without a default."""
    # GIVEN main.bicep's modules
    missing = []
    for symbol, (path, passed) in _modules().items():
        # WHEN the passed parameters are compared with the declared ones
        required = {name for name, must in _declared_parameters(path).items() if must}
        missing += [f"{symbol} ({path.name}): {name}" for name in sorted(required - set(passed))]

    # THEN nothing required is left out
    assert not missing, f"infra/main.bicep does not pass {', '.join(missing)}: add it to `params`"


def test_main_passes_only_declared_module_parameters():
    """Each module is passed only parameters it declares."""
    # GIVEN main.bicep's modules
    unknown = []
    for symbol, (path, passed) in _modules().items():
        # WHEN the passed parameters are compared with the declared ones
        declared = set(_declared_parameters(path))
        unknown += [f"{symbol} ({path.name}): {name}" for name in sorted(set(passed) - declared)]

    # THEN every one is declared
    assert not unknown, (
        f"infra/main.bicep passes undeclared parameters {', '.join(unknown)}: declare each with "
        "`param` and `@description` in the module, or stop passing it"
    )


def test_main_reads_only_declared_module_outputs():
    """Every ``<module>.outputs.<name>`` in main.bicep names an output the module declares."""
    # GIVEN the outputs each module declares
    modules = _modules()
    declared = {
        symbol: set(_parsed(path).get("outputs") or {}) for symbol, (path, _) in modules.items()
    }

    # WHEN main.bicep's reads of module outputs are collected
    reads = _output_reads(_parsed(MAIN))

    # THEN each names a module and one of its outputs
    unknown = sorted(
        f"{module}.outputs.{name}"
        for module, name in reads
        if name not in declared.get(module, set())
    )
    assert reads
    assert not unknown, f"infra/main.bicep reads undeclared outputs {', '.join(unknown)}"


def test_parameters_file_matches_main_parameters():
    """main.parameters.json sets only main.bicep's parameters, and each one without a default."""
    # GIVEN main.bicep's parameters and the azd parameters file
    declared = _declared_parameters(MAIN)
    in_file = set(json.loads(PARAMETERS.read_text(encoding="utf-8"))["parameters"])

    # WHEN they are compared
    unknown = in_file - set(declared)
    unset = {name for name, must in declared.items() if must} - in_file

    # THEN they agree, so azd neither fails on an unknown name nor prompts for a required one
    assert not unknown, f"infra/main.parameters.json sets undeclared {', '.join(sorted(unknown))}"
    assert not unset, (
        f"infra/main.parameters.json does not set {', '.join(sorted(unset))}: map each to an azd "
        'environment value, for example `"value": "${NAME}"`'
    )


def test_azure_yaml_service_is_the_tagged_function_app():
    """azure.yaml's one service is the azd-service-name the Function App is tagged with."""
    # GIVEN the service keys of azure.yaml (two-space indented keys under `services:`)
    lines = AZURE_YAML.read_text(encoding="utf-8").splitlines()
    block = takewhile(
        lambda line: not line or line.startswith(" "), lines[lines.index("services:") + 1 :]
    )
    services = [line.strip().rstrip(":") for line in block if re.fullmatch(r"  [\w-]+:", line)]

    # WHEN the Function App module's service name is read
    function_app = INFRA / "app" / "function-app.bicep"
    tagged = _parsed(function_app)["parameters"]["serviceName"]["default"]

    # THEN azd deploys the code to that app
    assert services == [tagged], f"azure.yaml services {services} must be [{tagged!r}]"
