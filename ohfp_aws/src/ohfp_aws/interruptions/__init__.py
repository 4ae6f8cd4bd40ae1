"""Hosts AWS takes back: what EC2 says about them (:mod:`.notices`), the queue that carries it
(:mod:`.event_rules` makes it, :mod:`.drain` reads it) and the reclaims reported to Host
Factory (:mod:`.reclaims`).
"""
