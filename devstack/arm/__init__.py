"""Azure Resource Manager stand-in: virtual machines and scale sets with their identity blocks,
changed by PATCH as long-running operations (what MIC does), and the node -> VM/scale-set map
the IMDS stand-in uses to decide which identities a node may get tokens for.

`app.py` the HTTP routes, `compute.py` the resources and their operators, `delta.py` what a
PATCH does to an identity block,
`resources.py` resource ids and the JSON views, `operations.py` the long-running operations,
`errors.py` ARM's error shapes, `seed.py` the seed's `arm:` section. (Nothing is imported here:
`devstack.world` imports `compute` and must not pull in the HTTP side.)"""
