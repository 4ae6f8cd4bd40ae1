"""The launch path: a template's fields read into an :class:`~ohfp_aws.vocabulary.AwsTemplate`
(:mod:`.template_fields`), the launch parameters it gives (:mod:`.spec`) and the launch
template each fleet or group launches from (:mod:`.launch_templates`).
"""
