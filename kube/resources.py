"""Resource definitions for the caches: generic (dict-backed) ones, so objects are projected
from plain dicts and never decoded into the full typed models (memory: NMI keeps only a few
fields of a few hundred pods)."""

from __future__ import annotations

from typing import Any

from lightkube.generic_resource import create_global_resource, create_namespaced_resource

# Core-group resources as generic ones: lightkube routes group "" to /api/v1.
Pod: Any = create_namespaced_resource("", "v1", "Pod", "pods")
Node: Any = create_global_resource("", "v1", "Node", "nodes")
