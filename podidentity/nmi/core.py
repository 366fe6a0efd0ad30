"""NMI's one core: who is calling, which identity, which token. The HTTP handlers are thin
translations of requests into these calls and of the results (or `azcommon.errors`) into
answers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from azcommon.errors import InvalidArgument
from podidentity.crds import AzureIdentity
from podidentity.nmi.identities import IdentitySource, PodRef, Wanted
from podidentity.nmi.pods import PodDirectory, PodView
from podidentity.nmi.tokens import Token, TokenCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Issued:
    """A token for a pod's identity."""

    token: Token
    identity: AzureIdentity
    pod: PodRef


@dataclass(frozen=True)
class PassThrough:
    """The calling pod is excepted (AzurePodIdentityException): its request goes to IMDS as is."""

    pod: PodView


class NmiCore:
    """Answers token requests; see podidentity/nmi/__init__.py for the wire format."""

    def __init__(
        self,
        pods: PodDirectory,
        identities: IdentitySource,
        tokens: TokenCache,
        *,
        assignment_wait: float,
        retry_after: int,
    ) -> None:
        self.pods = pods
        self.identities = identities
        self.tokens = tokens
        self.assignment_wait = assignment_wait
        self.retry_after = retry_after

    def host_token(
        self,
        namespace: str,
        name: str,
        resource: str,
        wanted: Wanted,
        gone: Callable[[], bool] = lambda: False,
    ) -> Issued:
        """`/host/token/`: a node component asks on behalf of pod `namespace/name`."""
        _check_resource(resource)
        known = self.pods.get(namespace, name)
        pod = (
            PodRef(namespace, name, known.uid, known.labels)
            if known is not None
            else PodRef(namespace, name)
        )
        return self._issue(pod, resource, wanted, gone)

    def pod_token(
        self,
        source_ip: str,
        resource: str,
        wanted: Wanted,
        gone: Callable[[], bool] = lambda: False,
    ) -> Issued | PassThrough:
        """An intercepted IMDS request from a pod on this node, found by its source address."""
        _check_resource(resource)
        caller = self.pods.caller(source_ip)
        if self.identities.excepted(caller.namespace, caller.labels):
            return PassThrough(caller)
        pod = PodRef(caller.namespace, caller.name, caller.uid, caller.labels)
        return self._issue(pod, resource, wanted, gone)

    def _issue(
        self, pod: PodRef, resource: str, wanted: Wanted, gone: Callable[[], bool]
    ) -> Issued:
        identity = self.identities.resolve(
            pod, wanted, wait=self.assignment_wait, retry_after=self.retry_after, gone=gone
        )
        token = self.tokens.get(identity, resource)
        return Issued(token, identity, pod)


def _check_resource(resource: str) -> None:
    if not resource:
        raise InvalidArgument("parameter resource cannot be empty")
