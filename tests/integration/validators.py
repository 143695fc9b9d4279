"""A validator handler for the policy-gate tests: a stand-in for an external scanner. It passes or
fails the item as its payload's ``scan`` says, and counts its calls in Redis (``test:scans:*``)."""

from __future__ import annotations

from models.policies import ValidationInput, ValidationVerdict
from tests.integration.handlers import books
from workers import StepContext, step

CAPABILITY = "scanner"


@step("pci_scan", capability=CAPABILITY)
def pci_scan(ctx: StepContext, cmd: ValidationInput) -> ValidationVerdict:
    books().incr(f"test:scans:{cmd.work_item_id}")
    verdict = cmd.payload.get("scan", "pass")
    if verdict == "pass":
        return ValidationVerdict(passed=True, summary="no findings", findings=[])
    return ValidationVerdict(
        passed=False, summary=f"2 findings on {cmd.check.get('id')}", findings=["TLS 1.0 enabled", "PAN in logs"]
    )
