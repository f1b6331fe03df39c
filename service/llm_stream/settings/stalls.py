"""When a batch that cannot finish is reported, and whether its input is kept for a resume."""

from __future__ import annotations

from pydantic import BaseModel, Field


class StallSettings(BaseModel):
    """Read by the aggregator (the stall rule), and by submit and the gateway (the input kept
    where ``llm-stream resume`` reads it)."""

    batch_stall_after_s: float = Field(
        600.0,
        ge=0,
        description="An open batch with no new result for this long, while its workers' "
        "groups have committed every request of their topics (nothing of it is pending), is "
        "reported stalled: results were lost and only a resume brings them. 0: never reported.",
    )
    batch_stall_check_s: float = Field(
        30.0, gt=0, description="How often the aggregator looks for stalled batches."
    )
    submit_keep_input: bool = Field(
        True,
        description="llm-stream submit stores the batch's input file, and the client library "
        "the lines it publishes, in the file store (as the gateway does its uploads), where "
        "llm-stream resume reads them; false: resume is refused for such batches.",
    )
