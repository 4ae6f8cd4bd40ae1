"""What AWS can supply a template: instance types by name or by shape (:mod:`.instance_types`,
:mod:`.requirements`), the mix of types, subnets and purchase options a fleet is asked for
(:mod:`.overrides`), the account's vCPU quotas (:mod:`.quotas`), why offerings fell short
(:mod:`.shortfalls`) and which ones to try last (:mod:`.offerings`).
"""
