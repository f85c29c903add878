"""A local Microsoft 365 simulator: Entra ID sign-in and tokens, Graph mail, Key Vault secrets."""

from devstack.simulator.directory import SimApp, SimUser
from devstack.simulator.faults import FaultRule, RequestRecord
from devstack.simulator.simulator import Simulator
from devstack.simulator.vaultstore import VaultError

__all__ = ["FaultRule", "RequestRecord", "SimApp", "SimUser", "Simulator", "VaultError"]
