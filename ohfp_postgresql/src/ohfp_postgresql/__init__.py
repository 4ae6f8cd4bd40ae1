"""ohfp-postgresql: the ``postgresql`` state store for ohfp (shared by failover hosts).

The entry point (:mod:`ohfp_postgresql.plugin`) imports nothing heavy; psycopg is imported
when the store is opened (:mod:`ohfp_postgresql.store`).
"""
