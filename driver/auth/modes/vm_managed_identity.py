"""VM managed identity: a token from IMDS for the node's system- or user-assigned identity."""

from __future__ import annotations

from azcommon.cloud import Cloud
from azcommon.credentials.base import KvCredential
from azcommon.credentials.imds import ImdsCredential
from azcommon.errors import InvalidArgument
from driver.auth.modes.base import (
    Attributes,
    BuildContext,
    Digest,
    IdentityInputs,
    IdentityModeModule,
    check_client_id,
)
from driver.model import AuthMaterial, IdentityMode, IdentitySpec, VolumeSpec

KEY = "usevmmanagedidentity"
LEGACY_CLIENT = "vmmanagedidentityclientid"  # azure/kv FlexVolume
PROVIDER_CLIENT = "userassignedidentityid"  # secrets-store provider


class VmManagedIdentity(IdentityModeModule):
    """IMDS on the node issues the token; a client id picks a user-assigned identity."""

    mode = IdentityMode.VM_MANAGED_IDENTITY
    keys = frozenset({KEY, LEGACY_CLIENT, PROVIDER_CLIENT})
    hint = (
        'usevmmanagedidentity: "true" (VM managed identity, optionally with '
        "vmmanagedidentityclientid)"
    )

    def chosen(self, attrs: Attributes, secrets: Attributes) -> str | None:
        return f'{attrs.name(KEY)}: "true"' if attrs.flag(KEY) else None

    def unused(self, inputs: IdentityInputs) -> None:
        attrs = inputs.attrs
        if _client_id(attrs):
            key = LEGACY_CLIENT if attrs.given(LEGACY_CLIENT) else PROVIDER_CLIENT
            inputs.warnings.append(f'{attrs.name(key)} ignored: {attrs.name(KEY)} is not "true"')

    def parse(self, inputs: IdentityInputs) -> tuple[IdentitySpec, AuthMaterial]:
        client = _client_id(inputs.attrs)
        return IdentitySpec(self.mode, client, inputs.nmi_port), AuthMaterial()

    def validate(self, spec: VolumeSpec, auth: AuthMaterial) -> None:
        pass  # no input is required: without a client id IMDS uses the system identity

    def identity_key(self, spec: VolumeSpec, auth: AuthMaterial, digest: Digest) -> str:
        return f"{self.mode}|{spec.identity.client_id.strip().lower() or 'system'}"

    def authorize(self, spec: VolumeSpec, ctx: BuildContext) -> None:
        if ctx.vm_policy is not None:
            ctx.vm_policy.check(spec.pod.namespace, spec.identity.client_id)

    def build(
        self, spec: VolumeSpec, auth: AuthMaterial, cloud: Cloud, ctx: BuildContext
    ) -> KvCredential:
        return ImdsCredential(
            session=ctx.session,
            endpoint=cloud.imds_endpoint,
            client_id=spec.identity.client_id,
            resource=cloud.keyvault_resource,
            deadline=ctx.imds_deadline,
            request_timeout=ctx.settings.request_timeout,
            clock=ctx.clock,
            monotonic=ctx.monotonic,
            sleep=ctx.sleep,
            on_token_request=ctx.on_token_request,
        )


def _client_id(attrs: Attributes) -> str:
    """The user-assigned identity's client id under either spelling ("" for the system one)."""
    legacy, provider = attrs.get(LEGACY_CLIENT), attrs.get(PROVIDER_CLIENT)
    if legacy and provider and legacy != provider:
        raise InvalidArgument(
            f"{attrs.name(LEGACY_CLIENT)} and {attrs.name(PROVIDER_CLIENT)} name different "
            "identities; give one"
        )
    client = legacy or provider
    if client:
        key = LEGACY_CLIENT if legacy else PROVIDER_CLIENT
        check_client_id(client, attrs.name(key), shown=attrs.shown(key))
    return client


VM_MANAGED_IDENTITY = VmManagedIdentity()
