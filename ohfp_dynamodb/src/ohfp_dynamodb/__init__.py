"""ohfp-dynamodb: the ``dynamodb`` state store for ohfp (shared by failover hosts).

The entry point (:mod:`ohfp_dynamodb.plugin`) imports nothing heavy; botocore is imported
when the store is opened (:mod:`ohfp_dynamodb.store`).
"""
