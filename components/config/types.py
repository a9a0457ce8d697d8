"""The annotated types the sections share, defined once, and the models' base class."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
)
from pydantic.alias_generators import to_camel

from components import aws_facts
from components.config.quantities import CPU, MEMORY, cpu_millicores, memory_mib
from modelrepo.layout import VERSION_PATTERN

LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                      2192, 2557, 2922, 3288, 3653)
"""The retention periods CloudWatch Logs accepts."""

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
IAM_PRINCIPAL_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$"
SNS_TOPIC_ARN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"
# A role or user, or a whole account (its root), as a bucket/key policy principal.
PROMOTION_READER_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:(root|(role|user)/[\w+=,.@/-]+)$"
CONTENT_HASH = VERSION_PATTERN
"""A model version: its content hash (modelrepo/layout.py, the one definition of the format).
Used as a field's `pattern` so the configuration reference shows it."""


class ConfigModel(BaseModel):
    """Every section: unknown keys are errors, values are frozen, keys are camelCase."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel)


def _cidr(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Network(str(value), strict=True))
    except ValueError:
        raise ValueError(
            f"must be an IPv4 CIDR with no host bits set, e.g. 10.0.0.0/16, got {value!r}"
        ) from None


def _quoted_string(value: Any) -> Any:
    # YAML reads an unquoted 1.30 as the float 1.3; refuse instead of guessing.
    if isinstance(value, float):
        raise ValueError(f"must be a quoted string such as \"1.35\", got the number {value!r}")
    return value


def _https_secret(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().startswith("https://"):
        raise ValueError("must be an https:// URL")  # never echo a secret
    return value


def _known_region(value: str) -> str:
    if aws_facts.region_partition(value) is None:
        raise ValueError(f"must be an AWS region where EKS is offered (botocore's endpoint data), "
                         f"got {value!r}")
    return value


def _cpu_quantity(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not CPU.fullmatch(value):
        raise ValueError(f"must be a CPU quantity such as \"2\", \"1.5\" or \"500m\", "
                         f"got {value!r}")
    if cpu_millicores(value) <= 0:
        raise ValueError(f"must be more than 0, got {value!r}")
    return value


def _memory_quantity(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value) or (
            isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise ValueError(f"must carry a unit such as Mi or Gi (a bare number is bytes), "
                         f"got {value!r}")
    if not isinstance(value, str) or not MEMORY.fullmatch(value):
        raise ValueError(f"must be a memory quantity such as \"512Mi\" or \"8Gi\", got {value!r}")
    if memory_mib(value) <= 0:
        raise ValueError(f"must be more than 0, got {value!r}")
    return value


Cidr = Annotated[str, BeforeValidator(_cidr)]
QuotedString = Annotated[str, BeforeValidator(_quoted_string)]
HttpsSecret = Annotated[SecretStr, AfterValidator(_https_secret)]
KnownRegion = Annotated[str, AfterValidator(_known_region)]
CpuQuantity = Annotated[str, BeforeValidator(_cpu_quantity)]
MemoryQuantity = Annotated[str, BeforeValidator(_memory_quantity)]
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL)]
"""A DNS-1123 label (length limits are the field's: 63 for names, less where names derive)."""
ModelName = Annotated[str, Field(pattern=DNS_1035_LABEL)]
"""A DNS-1035 label; the length every generated name allows is a rule (`model_names_fit`)."""
IamPrincipalArn = Annotated[str, Field(pattern=IAM_PRINCIPAL_ARN)]
PromotionReaderArn = Annotated[str, Field(pattern=PROMOTION_READER_ARN)]
