"""``ohfp templates validate --online``: what the templates name exists in the account.

One batched Describe* per kind of resource over every template (images, subnets, security
groups, launch templates), SSM image paths resolved first; each missing value a problem of
the field that names it, per template. Read only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ohfp_aws.context import AwsContext
from ohfp_aws.vocabulary import AwsTemplate
from ohfp_core.errors import CloudError
from ohfp_core.models import Problem

Lookup = Callable[[Sequence[str]], set[str]]


def missing(ctx: AwsContext, templates: Sequence[AwsTemplate]) -> dict[str, list[Problem]]:
    """Problems per template id (every template present, most with none).

    :raises CloudError: when AWS cannot be asked (a missing SSM parameter is a problem).
    """
    found: dict[str, list[Problem]] = {t.template_id: [] for t in templates}
    images: dict[str, list[tuple[str, str]]] = {}  # AMI id → (template id, as written)
    for template in templates:
        if not template.image_id:
            continue
        try:
            image_id = ctx.resolve_image(template.image_id)
        except CloudError as exc:
            found[template.template_id].append(Problem("imageId", f"{template.image_id}: {exc.message}"))
            continue
        images.setdefault(image_id, []).append((template.template_id, template.image_id))
    ec2 = ctx.services.ec2
    kinds: list[tuple[str, str, str, Lookup, dict[str, list[tuple[str, str]]]]] = [
        ("imageId", "image", "DescribeImages", ec2.existing_images, images),
        (
            "subnetId",
            "subnet",
            "DescribeSubnets",
            ec2.existing_subnets,
            _named(templates, lambda t: t.subnet_ids),
        ),
        (
            "securityGroupIds",
            "security group",
            "DescribeSecurityGroups",
            ec2.existing_security_groups,
            _named(templates, lambda t: t.security_group_ids),
        ),
        (
            "launchTemplateId",
            "launch template",
            "DescribeLaunchTemplates",
            ec2.existing_launch_templates,
            _named(templates, lambda t: (t.launch_template_id,) if t.launch_template_id else ()),
        ),
    ]
    region = ctx.config.region
    for field, noun, operation, lookup, named in kinds:
        if not named:
            continue
        exists = lookup(list(named))
        for value, users in named.items():
            if value in exists:
                continue
            for template_id, written in users:
                shown = value if written == value else f"{written} ({value})"
                found[template_id].append(
                    Problem(field, f"{noun} {shown} does not exist in {region} ({operation})")
                )
    return found


def _named(
    templates: Sequence[AwsTemplate], values: Callable[[AwsTemplate], Sequence[str]]
) -> dict[str, list[tuple[str, str]]]:
    """Each value ``values`` gives for the templates → (template id, value) of those naming it."""
    named: dict[str, list[tuple[str, str]]] = {}
    for template in templates:
        for value in values(template):
            named.setdefault(value, []).append((template.template_id, value))
    return named
