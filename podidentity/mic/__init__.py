"""MIC, the managed identity controller: a Deployment of replicas, one leader on a Lease.

MIC gives each pod labelled `aadpodidbinding: <selector>` an AzureAssignedIdentity per
identity its bindings name, and attaches each user-assigned identity (type 0) to the VM or
VM scale set of the pod's node through Azure Resource Manager, so that IMDS on that node issues
tokens for it. NMI (a separate component) reads what MIC writes.

Parts (thin edges over one core):

- `model.py`    pure rules: pod/node views, VM or scale set of a node (`spec.providerID`),
                the desired AzureAssignedIdentities of one pod, collision-free names;
- `reconcile.py` the core (`Reconciler`): dirty pods -> plan per VM/scale set -> act;
- `writer.py`   AzureAssignedIdentity writes; `arm.py` ARM through azure-mgmt-compute;
- `cloud.py`    azure.json or environment -> subscription, resource group, ARM credential;
- `settings.py` the frozen settings and `--help`; `app.py` + `__main__.py` the composition root.

The reconcile cycle
-------------------

Inputs are six watch-fed caches (pods with the label, nodes, AzureIdentity,
AzureIdentityBinding, AzurePodIdentityException, AzureAssignedIdentity). Nothing is listed
again per cycle; the caches are the API server's state as of their last event.

1. **Mark.** A change marks only the pods it touches: a pod itself; a node -> its pods; a
   binding -> pods whose label equals its old or new selector; an identity -> pods selecting
   its bindings; an exception -> pods of its namespace; an AzureAssignedIdentity -> its pod.
   A resync (`--resync-interval`) marks every pod, which finds nothing to do when nothing
   changed.
2. **Desire (per marked pod).** Bindings whose `spec.selector` equals the pod's
   `aadpodidbinding` label - in the pod's namespace by default (`--namespaced`), with the
   identity in the binding's namespace - give one desired AzureAssignedIdentity each, in the
   pod's namespace, named `<pod>-<identity>-<digest of the four names>`. No desire for a pod
   without a node, a finished pod, a pod an AzurePodIdentityException matches, an identity
   that does not exist or a type-0 identity whose `resourceID` is not a user-assigned identity
   id (reported on the binding as an Event). The per-VM/scale-set count of desires per
   identity ("in use") is updated from the pod's old and new desires.
3. **Diff (per marked pod)** with the AzureAssignedIdentities naming the pod: missing ->
   create; different (identity, binding, node, pod UID) -> replace; `Created` -> confirm;
   not desired, `Unassigned` or being deleted -> remove. A pod whose objects the cache does not
   yet show as we last wrote them is deferred (its cache event marks it again): no write is
   ever repeated because the cache lagged.
4. **Act (per VM or scale set, concurrently).**
   a. write intent: creates and replaces as `Created`, removals as `Unassigned`;
   b. ARM: read the identity block once (then remembered), compute one delta - attach what
      is desired and missing, detach what was removed and is in use by no other desire on the
      same VM or scale set and is not immutable - and PATCH it in as few requests as the 150
      changes limit allows; Retry-After closes the subscription for every thread; identities
      ARM refuses (LinkedAuthorizationFailed) are reported on their bindings, skipped, and
      asked for again after `--refused-retry-interval`;
   c. write the outcome: `Assigned` for what is attached; delete (then lift the finalizer)
      what was removed.
   Nothing is written and ARM is not called when the diff is empty.
5. **Verify (`--arm-verify-interval`).** Read every VM and scale set that should hold
   identities and put back any removed by hand (the only periodic ARM traffic).

Leader changes: intent is in the API before ARM is called, and every step is idempotent, so a
leader killed at any point leaves `Created` or `Unassigned` objects from which the next leader
finishes the work (it reads ARM before changing it: nothing is attached twice or left behind).
A replica that cannot renew its Lease stops before its next write (`guard`).

Dependency rule: never imports `driver` or `podidentity.nmi`.
"""
