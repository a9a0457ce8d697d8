"""Kubernetes CPU and memory quantities as numbers, limited to the forms that make sense for a
model server's requests ("2", "1.5", "500m"; "512Mi", "8Gi", "1G")."""

from __future__ import annotations

import re

CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)$")
_MEMORY_MIB = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 ** 2, "k": 1000 / 1024 ** 2,
               "M": 1000 ** 2 / 1024 ** 2, "G": 1000 ** 3 / 1024 ** 2, "T": 1000 ** 4 / 1024 ** 2}


def _parts(pattern: re.Pattern[str], quantity: str) -> tuple[str, str]:
    match = pattern.fullmatch(quantity)
    if match is None:
        raise ValueError(f"not a quantity of the form {pattern.pattern}: {quantity!r}")
    return match[1], match[2]


def cpu_millicores(quantity: str) -> float:
    """"2" -> 2000, "1.5" -> 1500, "500m" -> 500."""
    number, milli = _parts(CPU, quantity)
    return float(number) * (1 if milli else 1000)


def memory_mib(quantity: str) -> float:
    """"8Gi" -> 8192, "512Mi" -> 512, "1G" -> 953.67."""
    number, unit = _parts(MEMORY, quantity)
    return float(number) * _MEMORY_MIB[unit]
