"""Service principal: `clientid`/`clientsecret` from the volume's secret, exchanged at Entra ID.

The secret reaches us as CSI `secrets` (nodePublishSecretRef) or, for FlexVolume, as base64
`kubernetes.io/secret/<key>` options (secretRef); either or both may be given if they agree.
"""

from __future__ import annotations

import base64
import binascii

from azcommon.cloud import Cloud
from azcommon.credentials.aad import ServicePrincipalCredential
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
from driver.model import AuthMaterial, IdentityMode, IdentitySpec, VolumeSpec

FLEX_SECRET = "kubernetes.io/secret/"
_FIELDS = ("clientid", "clientsecret")


class ServicePrincipal(IdentityModeModule):
    """A client id and secret, keyed by a peppered digest of the secret."""

    mode = IdentityMode.SERVICE_PRINCIPAL
    hint = (
        "put clientid and clientsecret in the volume's secret (secretRef / "
        "nodePublishSecretRef) for a service principal"
    )
    needs_stored_auth = True

    def chosen(self, attrs: Attributes, secrets: Attributes) -> str | None:
        client_id, client_secret = credentials(attrs, secrets)
        if client_id or client_secret:
            return "clientid/clientsecret in the volume's secret (service principal)"
        return None

    def parse(self, inputs: IdentityInputs) -> tuple[IdentitySpec, AuthMaterial]:
        client_id, client_secret = credentials(inputs.attrs, inputs.secrets)
        if not client_id:
            raise InvalidArgument(
                "service principal: the volume's secret has clientsecret but no clientid"
            )
        if not client_secret:
            raise InvalidArgument(
                "service principal: the volume's secret has clientid but no clientsecret"
            )
        # The client id is never quoted: it sits next to the secret and may be a pasted one.
        check_client_id(client_id, "clientid in the volume's secret")
        return (
            IdentitySpec(self.mode, client_id, inputs.nmi_port),
            AuthMaterial(client_secret=client_secret),
        )

    def validate(self, spec: VolumeSpec, auth: AuthMaterial) -> None:
        require(
            [
                (bool(spec.tenant_id), "tenantId"),
                (bool(spec.identity.client_id), "clientid in the volume's secret"),
                (bool(auth.client_secret), "clientsecret in the volume's secret"),
            ],
            "service principal authentication",
        )

    def identity_key(self, spec: VolumeSpec, auth: AuthMaterial, digest: Digest) -> str:
        tenant = spec.tenant_id.strip().lower()
        client = spec.identity.client_id.strip().lower()
        return f"{self.mode}|{tenant}|{client}|{digest(auth.client_secret)}"

    def build(
        self, spec: VolumeSpec, auth: AuthMaterial, cloud: Cloud, ctx: BuildContext
    ) -> KvCredential:
        return ServicePrincipalCredential(
            session=ctx.entra_session,
            cloud=cloud,
            tenant_id=spec.tenant_id,
            client_id=spec.identity.client_id,
            client_secret=auth.client_secret,
            request_timeout=ctx.settings.request_timeout,
            clock=ctx.clock,
            on_token_request=ctx.on_token_request,
        )


def credentials(attrs: Attributes, secrets: Attributes) -> tuple[str, str]:
    """(clientid, clientsecret) from the CSI secrets and/or the FlexVolume secretRef keys."""
    flex: dict[str, str] = {}
    for key in attrs.starting_with(FLEX_SECRET):
        sub = key[len(FLEX_SECRET) :]
        # Every secretRef value must be base64; only the two we use must also be text.
        decoded = _b64(attrs.get(key), attrs.name(key), text=sub in _FIELDS)
        if decoded is not None:
            flex[sub] = decoded
    found: list[str] = []
    for sub in _FIELDS:
        csi_value, flex_value = secrets.get(sub), flex.get(sub, "").strip()
        if csi_value and flex_value and csi_value != flex_value:
            raise InvalidArgument(
                f"{sub} is given both in the CSI secrets and in {FLEX_SECRET}{sub}, "
                "with different values"
            )
        found.append(csi_value or flex_value)
    return found[0], found[1]


def _b64(value: str, key: str, *, text: bool) -> str | None:
    # kubelet base64-encodes secretRef values; like upstream, tolerate wrapped lines.
    compact = "".join(value.split())
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{key} is not valid base64") from None
    if not text:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"{key} does not decode to UTF-8 text") from None


SERVICE_PRINCIPAL = ServicePrincipal()
