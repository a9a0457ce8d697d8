"""A one-rule pack kept as a test fixture: `model-non-root` exactly as policy/rules.py wrote it
before the rules read properties as Mappings (`isinstance(spec, dict)`). Called with plain dicts
it fires on a root-capable model; behind pulumi-policy's read-only proxies (a Mapping, not a
dict) it sees nothing. tests/policy/test_engine_path.py uses it to show that the engine-path
tests catch what direct calls with dicts could not."""

from typing import Any


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _predictors(props: dict[str, Any]) -> list[dict[str, Any]]:
    spec = props.get("spec")
    if not isinstance(spec, dict):
        return []
    return [_dict(spec.get("predictor"))] + [_dict(_dict(c).get("predictor"))
                                             for c in spec.get("canary") or []]


def model_non_root(args: Any, report: Any) -> None:
    """Model pods run as non-root with the runtime's default seccomp profile."""
    if args.resource_type != "kubernetes:serving.kserve.io/v1beta1:InferenceService":
        return
    for predictor in _predictors(args.props):
        context = predictor.get("securityContext") or {}
        if context.get("runAsNonRoot") is not True:
            report(f"{args.name}: pods may run as root")


if __name__ == "__main__":
    from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy

    PolicyPack(name="dict-idiom", enforcement_level=EnforcementLevel.MANDATORY,
               policies=[ResourceValidationPolicy(name="model-non-root",
                                                  description="Model pods run as non-root.",
                                                  validate=model_non_root)])
