"""Workload identity: the pod's service-account token (from kubelet) exchanged at Entra ID for
the federated application `clientID`."""

from __future__ import annotations

from azure.core.credentials import TokenCredential

from azcommon.cloud import Cloud
from azcommon.credentials.aad import (
    WORKLOAD_IDENTITY_AUDIENCE,
    AssertionHolder,
    WorkloadIdentityCredential,
)
from azcommon.credentials.base import KvCredential
from azcommon.errors import InvalidArgument
from driver.auth.modes.base import (
    Attributes,
    BuildContext,
    Digest,
    IdentityInputs,
    IdentityModeModule,
    check_client_id,
    require,
)
from driver.model import (
    AuthMaterial,
    IdentityMode,
    IdentitySpec,
    VolumeSpec,
)

KEY = "clientid"


class WorkloadIdentity(IdentityModeModule):
    """Keyed by application and service account: a republished token is the same identity."""

    mode = IdentityMode.WORKLOAD_IDENTITY
    keys = frozenset({KEY})
    hint = "clientID (workload identity)"
    needs_stored_auth = True
    proves_per_volume = True

    def chosen(self, attrs: Attributes, secrets: Attributes) -> str | None:
        return f"{attrs.name(KEY)} (workload identity)" if attrs.get(KEY) else None

    def parse(self, inputs: IdentityInputs) -> tuple[IdentitySpec, AuthMaterial]:
        attrs = inputs.attrs
        client_id = attrs.get(KEY)
        check_client_id(client_id, attrs.name(KEY), shown=attrs.shown(KEY))
        token = inputs.tokens.get(WORKLOAD_IDENTITY_AUDIENCE)
        if token is None:
            raise InvalidArgument(
                f"{attrs.name(KEY)} (workload identity) needs a service-account token for "
                f"audience {WORKLOAD_IDENTITY_AUDIENCE} in csi.storage.k8s.io/serviceAccount.tokens, "
                f"and kubelet passed none: the CSIDriver must list that audience in tokenRequests"
            )
        return (
            IdentitySpec(self.mode, client_id, inputs.nmi_port),
            AuthMaterial(sa_token=token[0], sa_token_expiry=token[1]),
        )

    def validate(self, spec: VolumeSpec, auth: AuthMaterial) -> None:
        pod = spec.pod
        require(
            [
                (bool(spec.tenant_id), "tenantId"),
                (bool(spec.identity.client_id), "clientID"),
                (bool(pod.namespace), "the pod namespace"),
                (bool(pod.service_account), "the pod's service account name"),
                (
                    bool(auth.sa_token),
                    f"a service-account token for audience {WORKLOAD_IDENTITY_AUDIENCE} "
                    "(set tokenRequests on the CSIDriver)",
                ),
            ],
            "workload identity",
        )

    def identity_key(self, spec: VolumeSpec, auth: AuthMaterial, digest: Digest) -> str:
        tenant = spec.tenant_id.strip().lower()
        client = spec.identity.client_id.strip().lower()
        return f"{self.mode}|{tenant}|{client}|{spec.pod.namespace}/{spec.pod.service_account}"

    def build(
        self, spec: VolumeSpec, auth: AuthMaterial, cloud: Cloud, ctx: BuildContext
    ) -> KvCredential:
        return WorkloadIdentityCredential(
            session=ctx.entra_session,
            cloud=cloud,
            tenant_id=spec.tenant_id,
            client_id=spec.identity.client_id,
            namespace=spec.pod.namespace,
            service_account=spec.pod.service_account,
            assertion=AssertionHolder(auth.sa_token, auth.sa_token_expiry),
            request_timeout=ctx.settings.request_timeout,
            clock=ctx.clock,
            on_token_request=ctx.on_token_request,
        )

    def refresh(self, credential: KvCredential, auth: AuthMaterial) -> None:
        # kubelet republishes fresh service-account tokens; the shared credential uses the latest.
        if isinstance(credential, WorkloadIdentityCredential):
            credential.assertion.update(auth.sa_token, auth.sa_token_expiry)

    def principal(self, spec: VolumeSpec, identity_key: str, credential: TokenCredential) -> str:
        return f"{spec.tenant_id}/{spec.identity.client_id}"


WORKLOAD_IDENTITY = WorkloadIdentity()
