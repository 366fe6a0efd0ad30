"""Pod identity: a token for the pod's Azure identity from NMI (`usepodidentity: "true"`)."""

from __future__ import annotations

from azure.core.credentials import TokenCredential

from azcommon.cloud import Cloud
from azcommon.credentials.base import KvCredential
from azcommon.errors import InvalidArgument
from driver.auth.modes.base import (
    Attributes,
    BuildContext,
    Digest,
    IdentityInputs,
    IdentityModeModule,
    require,
)
from driver.auth.nmi import NmiCredential
from driver.model import AuthMaterial, IdentityMode, IdentitySpec, VolumeSpec

KEY = "usepodidentity"


class PodIdentity(IdentityModeModule):
    """NMI answers for the pod (by name and namespace) with the identity MIC assigned it."""

    mode = IdentityMode.POD_IDENTITY
    keys = frozenset({KEY})
    hint = 'usepodidentity: "true" (AAD pod identity)'
    proves_per_volume = True

    def chosen(self, attrs: Attributes, secrets: Attributes) -> str | None:
        return f'{attrs.name(KEY)}: "true"' if attrs.flag(KEY) else None

    def parse(self, inputs: IdentityInputs) -> tuple[IdentitySpec, AuthMaterial]:
        pod = inputs.pod
        if pod is not None:
            missing = [w for w, v in (("name", pod.name), ("namespace", pod.namespace)) if not v]
            if missing:
                raise InvalidArgument(
                    f"{inputs.attrs.name(KEY)} needs the pod's {' and '.join(missing)}, which "
                    "kubelet did not pass (kubernetes.io/pod.* for FlexVolume; for CSI set "
                    "podInfoOnMount: true on the CSIDriver)"
                )
        return IdentitySpec(self.mode, "", inputs.nmi_port), AuthMaterial()

    def validate(self, spec: VolumeSpec, auth: AuthMaterial) -> None:
        pod = spec.pod
        require(
            [(bool(pod.namespace), "the pod namespace"), (bool(pod.name), "the pod name")],
            "pod identity (usepodidentity)",
        )
        port = spec.identity.nmi_port
        if not 0 < port < 65536:
            raise InvalidArgument(f"nmiport {port} is not a TCP port (1-65535)")

    def identity_key(self, spec: VolumeSpec, auth: AuthMaterial, digest: Digest) -> str:
        pod = spec.pod
        return f"{self.mode}|nmi:{spec.identity.nmi_port}|{pod.namespace}/{pod.name}|{pod.uid}"

    def build(
        self, spec: VolumeSpec, auth: AuthMaterial, cloud: Cloud, ctx: BuildContext
    ) -> KvCredential:
        return NmiCredential(
            session=ctx.session,
            port=spec.identity.nmi_port,
            pod_namespace=spec.pod.namespace,
            pod_name=spec.pod.name,
            resource=cloud.keyvault_resource,
            deadline=ctx.settings.nmi_deadline,
            request_timeout=ctx.settings.request_timeout,
            clock=ctx.clock,
            monotonic=ctx.monotonic,
            sleep=ctx.sleep,
            on_token_request=ctx.on_token_request,
        )

    def principal(self, spec: VolumeSpec, identity_key: str, credential: TokenCredential) -> str:
        # NMI tells which identity MIC assigned to the pod once a token was issued.
        client_id = getattr(credential, "client_id", "") or ""
        return f"{spec.tenant_id}/{client_id}" if client_id else identity_key


POD_IDENTITY = PodIdentity()
