"""The mlserve policy pack: `pulumi preview --policy-pack policy`. Builds the pack only; the rules
live in policy/rules.py, where the tests call them directly."""

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from rules import RULES


def _resource_policy(rule):
    def validate(args, report):
        if not rule.resource_types or args.resource_type in rule.resource_types:
            rule.func(args, report)
    return ResourceValidationPolicy(name=rule.name, description=rule.description,
                                    validate=validate)


def _stack_policy(rule):
    return StackValidationPolicy(name=rule.name, description=rule.description,
                                 validate=rule.func)


PolicyPack(
    name="mlserve",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[_resource_policy(r) if r.kind == "resource" else _stack_policy(r) for r in RULES],
)
