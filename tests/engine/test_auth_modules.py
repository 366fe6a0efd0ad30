"""One module per identity mode and per object type, and what each mode tells rotation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import requests

from azcommon.cloud import Cloud
from azcommon.errors import InvalidArgument
from devstack.client import Devstack
from driver.auth.modes.registry import MODES, module_for
from driver.auth.provider import CredentialProvider
from driver.config import Settings
from driver.keyvault.types.registry import KINDS, kind_of
from driver.model import (
    AuthMaterial,
    IdentityMode,
    ObjectType,
    PodInfo,
)
from tests.engine.auth_support import podid_spec, sp_spec, spec_for, wi_spec

# --- one module per identity mode and per object type ----------------------------------------


def test_every_identity_mode_has_exactly_one_module() -> None:
    modes = [module.mode for module in MODES]
    assert sorted(modes) == sorted(IdentityMode)
    assert len(set(modes)) == len(modes)
    # Each in a file of its own.
    assert len({type(module).__module__ for module in MODES}) == len(MODES)
    assert all(module_for(mode).mode is mode for mode in IdentityMode)


def test_every_object_type_has_exactly_one_module() -> None:
    types = [kind.type for kind in KINDS]
    assert sorted(types) == sorted(ObjectType)
    assert len(set(types)) == len(types)
    assert len({type(kind).__module__ for kind in KINDS}) == len(KINDS)
    assert all(kind_of(object_type).type is object_type for object_type in ObjectType)


@pytest.mark.parametrize(
    ("mode", "stored", "per_volume"),
    [
        (IdentityMode.POD_IDENTITY, False, True),
        (IdentityMode.SERVICE_PRINCIPAL, True, False),
        (IdentityMode.VM_MANAGED_IDENTITY, False, False),
        (IdentityMode.WORKLOAD_IDENTITY, True, True),
    ],
)
def test_what_rotation_needs_from_each_mode(
    devstack: Devstack,
    session: requests.Session,
    mode: IdentityMode,
    stored: bool,
    per_volume: bool,
) -> None:
    # Rotation after a restart cannot authenticate a service principal or workload identity
    # without the secret inputs; pod and workload identities must prove, per volume, that the
    # shared Azure identity is still theirs.
    provider = CredentialProvider(session, Settings())
    spec = spec_for(devstack, mode)
    assert provider.needs_stored_auth(spec) is stored
    assert provider.proves_per_volume(spec) is per_volume


def test_pods_of_one_assigned_identity_share_a_principal_once_nmi_named_it(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    spec = podid_spec(devstack)
    key = provider.identity_key(spec, AuthMaterial())
    credential = provider.credential_for(spec, AuthMaterial(), cloud)
    # Before any token, NMI has not said which identity the pod has: the pod is its own check.
    assert provider.principal(spec, key, credential) == key
    credential.get_token(cloud.scope)
    principal = f"{devstack.tenant_id}/{devstack.client_id('pod-identity')}"
    assert provider.principal(spec, key, credential) == principal


def test_workload_identity_principal_is_the_application_and_others_their_identity(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    auth = AuthMaterial(sa_token=devstack.sa_token("default", "workload-sa"))
    wi = wi_spec(devstack)
    credential = provider.credential_for(wi, auth, cloud)
    key = provider.identity_key(wi, auth)
    expected = f"{devstack.tenant_id}/{devstack.client_id('workload')}"
    assert provider.principal(wi, key, credential) == expected
    # Another service account federated to the same application is the same principal.
    other = wi_spec(devstack, "another-sa")
    assert provider.principal(other, provider.identity_key(other, auth), credential) == expected

    vm = spec_for(devstack, IdentityMode.VM_MANAGED_IDENTITY)
    vm_key = provider.identity_key(vm, AuthMaterial())
    vm_credential = provider.credential_for(vm, AuthMaterial(), cloud)
    assert provider.principal(vm, vm_key, vm_credential) == vm_key


def test_a_spec_the_parser_would_refuse_is_refused_before_any_request(
    devstack: Devstack, provider: CredentialProvider, cloud: Cloud
) -> None:
    # Specs restored from the state store skip the parser; the mode's one check still runs.
    sp = sp_spec(devstack)
    with pytest.raises(InvalidArgument, match="clientsecret in the volume's secret"):
        provider.credential_for(sp, AuthMaterial(), cloud)
    wi = replace(wi_spec(devstack), pod=PodInfo(name="wi-pod", namespace="default"))
    with pytest.raises(InvalidArgument, match="service account name"):
        provider.credential_for(wi, AuthMaterial(sa_token="t"), cloud)
    assert len(provider) == 0
