"""The HIPAA data export's residency check (examples/catalog/export.hipaa.yaml and
examples/policies/policy-hipaa-export-v1.json): a validator is a plain ``@step`` handler, so an
external scanner is one too. Run a worker for it with ``workyard worker --capability residency
--handlers examples.hipaa`` (or ``workyard up --handlers examples.hipaa``)."""

from __future__ import annotations

from models.policies import ValidationInput, ValidationVerdict
from workers import StepContext, step

# Protected health information leaves only for regions in the United States.
ALLOWED_REGIONS = frozenset({"us-east-1", "us-east-2", "us-west-1", "us-west-2"})


@step("check_residency", capability="residency")
def check_residency(ctx: StepContext, cmd: ValidationInput) -> ValidationVerdict:
    """Pass when the export's destination region keeps the data in the United States."""
    region = cmd.payload.get("destinationRegion")
    if region in ALLOWED_REGIONS:
        return ValidationVerdict(passed=True, summary=f"{region} is in the United States", findings=[])
    return ValidationVerdict(
        passed=False,
        summary=f"{region!r} is outside the United States",
        findings=[f"destination region {region!r} is not one of {', '.join(sorted(ALLOWED_REGIONS))}"],
    )
