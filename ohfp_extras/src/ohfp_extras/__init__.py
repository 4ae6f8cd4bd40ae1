"""ohfp-extras: extension plugins a site enables in ``ohfp.json``.

- ``dry-run`` (:mod:`ohfp_extras.dry_run`): nothing reaches the cloud; replies say so.
- ``audit`` (:mod:`ohfp_extras.audit`): one JSON line per cloud change, who and what.
- ``budget`` (:mod:`ohfp_extras.budget`): refuse requests beyond a template's hourly cost.

Installing the distribution registers the three ``ohfp.plugins`` entry points, and ohfp loads
every installed one; each stays inert until its own section of ``ohfp.json`` says
``"enabled": true`` (read through the ``ohfp_configure`` hook).
"""
