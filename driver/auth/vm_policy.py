"""Which namespaces may use which of the node's VM managed identities (`--vm-identity-policy`).

Any pod on a node can ask for `usevmmanagedidentity`, and IMDS issues a token for every
identity attached to the VM. Without a policy that stays so (the azure/kv driver's behaviour).
With one, a volume may use a VM identity only when its pod's namespace is allowed to.

The policy file is YAML (or JSON), a mapping from namespace to the identities it may use:

    kube-system: ["*"]                 # any identity of the VM
    team-a:                            # these user-assigned identities (client ids) and the
      - 00000000-0000-0000-0000-00000000000a   # system-assigned one
      - system
    "*": []                            # every other namespace: none (the default)

A namespace not listed falls back to the `"*"` entry, and without one may use none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from azcommon.errors import PermissionDenied

SYSTEM = "system"  # the system-assigned identity (no client id)
ANY = "*"


@dataclass(frozen=True)
class VmIdentityPolicy:
    """Namespace -> the client ids (lower case, `system`, or `*`) it may use."""

    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    source: str = ""  # where it was read from, for messages

    @classmethod
    def load(cls, path: Path) -> VmIdentityPolicy:
        """Read and check the file; raises ValueError saying what is wrong (at startup)."""
        try:
            raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--vm-identity-policy {path}: cannot read it ({exc})") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"--vm-identity-policy {path}: not valid YAML ({exc})") from None
        return cls.parse(raw, str(path))

    @classmethod
    def parse(cls, raw: Any, source: str) -> VmIdentityPolicy:
        where = f"--vm-identity-policy {source}"
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: must map namespaces to lists of client ids")
        allowed: dict[str, frozenset[str]] = {}
        for namespace, ids in raw.items():
            if not isinstance(namespace, str) or not namespace:
                raise ValueError(f'{where}: every key must be a namespace name (or "*")')
            if ids is None:
                ids = []
            if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
                raise ValueError(
                    f'{where}: namespace {namespace!r} must list client ids, "system" or "*"'
                )
            allowed[namespace] = frozenset(i.strip().lower() for i in ids)
        return cls(allowed, source)

    def check(self, namespace: str, client_id: str) -> None:
        """Raise PERMISSION_DENIED unless `namespace` may use the identity (`""`: system)."""
        wanted = client_id.strip().lower() or SYSTEM
        ids = self.allowed.get(namespace) if namespace else None
        if ids is None:
            ids = self.allowed.get(ANY, frozenset())
        if ANY in ids or wanted in ids:
            return
        what = "system-assigned identity" if wanted == SYSTEM else f"identity {wanted}"
        raise PermissionDenied(
            f"namespace {namespace or '(unknown)'!r} may not use the VM's managed {what}: the"
            f" node's VM identity policy ({self.source}) does not allow it; ask the cluster"
            " operator to add it there, or use pod identity or workload identity"
        )
