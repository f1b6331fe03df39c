"""What ``llm-stream status`` and ``llm-stream cancel`` exit with, so a script can branch
without parsing the batch object (``cli.main`` prints them in each command's help).

Reading a batch's status is the client's (``BatchClient.retrieve`` and ``wait``).
"""

from __future__ import annotations

from llm_stream.batch.status import CANCELLED_STATUSES, BatchStatus
from llm_stream.contracts import BatchObject

#: ``status --wait`` exit codes, one per terminal status, so scripts can branch without JSON.
EXIT_CODES: dict[BatchStatus, int] = {
    BatchStatus.COMPLETED: 0,
    BatchStatus.FAILED: 4,
    BatchStatus.EXPIRED: 5,
    BatchStatus.CANCELLED: 6,
}
EXIT_NO_BATCH = 1
EXIT_USAGE = 2
EXIT_NOT_TERMINAL = 3

EPILOG = f"""\
exit codes:
  {EXIT_CODES[BatchStatus.COMPLETED]}  printed the batch (with --wait: it completed)
  {EXIT_NO_BATCH}  no such batch, or its batch object is unreadable
  {EXIT_USAGE}  bad arguments or unsafe batch id
  {EXIT_NOT_TERMINAL}  --wait: the batch was still not finished when SECONDS ran out
  {EXIT_CODES[BatchStatus.FAILED]}  --wait: the batch failed
  {EXIT_CODES[BatchStatus.EXPIRED]}  --wait: the batch expired (its completion window passed)
  {EXIT_CODES[BatchStatus.CANCELLED]}  --wait: the batch was cancelled
"""


def exit_code(batch: BatchObject | None, *, waited: bool) -> int:
    """The command's exit code for what it printed (see ``EPILOG``)."""
    if batch is None:
        return EXIT_NO_BATCH
    if not waited:
        return 0
    return EXIT_CODES.get(batch.status, EXIT_NOT_TERMINAL)


#: ``cancel``: the batch had already finished (completed, failed or expired): not cancelled.
EXIT_TOO_LATE_TO_CANCEL = 7

CANCEL_EPILOG = f"""\
exit codes:
  0  the batch is cancelling (or was cancelled before); its batch object is printed
  {EXIT_NO_BATCH}  no such batch, or its batch object is unreadable
  {EXIT_USAGE}  bad arguments or unsafe batch id
  {EXIT_TOO_LATE_TO_CANCEL}  the batch had already finished (completed, failed or expired);
     its batch object is printed, unchanged
"""


def cancel_exit_code(batch: BatchObject | None) -> int:
    """``cancel``'s exit code for what it printed (see ``CANCEL_EPILOG``)."""
    if batch is None:
        return EXIT_NO_BATCH
    return 0 if batch.status in CANCELLED_STATUSES else EXIT_TOO_LATE_TO_CANCEL
