"""What every ``llm-stream`` command exits with, so a script can branch without parsing
output: ``status`` and ``cancel`` say what they printed, and every command says which kind of
failure stopped it (``cli.main`` prints these in each command's help; ``cli.errors`` decides
the kind of a failure).

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
#: ``cancel``: the batch had already finished (completed, failed or expired): not cancelled.
EXIT_TOO_LATE_TO_CANCEL = 7
#: ``resume``: the batch is unknown, has ended, or its input was not kept.
EXIT_CANNOT_RESUME = 8

#: The failures a user causes or meets, one exit code per kind.
EXIT_UNEXPECTED = 9
EXIT_BROKER_UNREACHABLE = 10
EXIT_BROKER_REFUSED = 11
EXIT_TOPIC_MISSING = 12
EXIT_MODEL_PATH = 13
EXIT_ENGINE_START = 14
EXIT_INPUT_FILE = 15
EXIT_OUTPUT_NOT_WRITABLE = 16
EXIT_MODEL_NOT_SERVED = 17
#: Ctrl-C, by the shell's convention (128 + SIGINT).
EXIT_INTERRUPTED = 130

FAILURE_EPILOG = f"""\
exit codes of failures (any command; --debug adds the traceback):
  {EXIT_USAGE}  bad arguments or settings, or a port to listen on already taken
  {EXIT_UNEXPECTED}  an unexpected error, in one line; rerun with --debug for the traceback
  {EXIT_BROKER_UNREACHABLE}  Kafka is unreachable at the bootstrap servers
  {EXIT_BROKER_REFUSED}  Kafka refused the authentication, the TLS handshake or the access
  {EXIT_TOPIC_MISSING}  a topic is missing and could not be created
  {EXIT_MODEL_PATH}  --model is neither a model directory (with config.json) nor a hub id
  {EXIT_ENGINE_START}  the vLLM engine failed to start (out of memory, no device, ...)
  {EXIT_INPUT_FILE}  the input file is missing, unreadable, empty or not batch JSONL
  {EXIT_OUTPUT_NOT_WRITABLE}  the output directory or file cannot be written
  {EXIT_MODEL_NOT_SERVED}  routing by model: no live worker serves a model the batch names
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); stopped cleanly
"""

EPILOG = f"""\
exit codes:
  {EXIT_CODES[BatchStatus.COMPLETED]}  printed the batch (with --wait: it completed)
  {EXIT_NO_BATCH}  no such batch, or its batch object is unreadable
  {EXIT_USAGE}  bad arguments or unsafe batch id
  {EXIT_NOT_TERMINAL}  --wait: the batch was still not finished when SECONDS ran out
  {EXIT_CODES[BatchStatus.FAILED]}  --wait: the batch failed
  {EXIT_CODES[BatchStatus.EXPIRED]}  --wait: the batch expired (its completion window passed)
  {EXIT_CODES[BatchStatus.CANCELLED]}  --wait: the batch was cancelled

{FAILURE_EPILOG}"""

CANCEL_EPILOG = f"""\
exit codes:
  0  the batch is cancelling (or was cancelled before); its batch object is printed
  {EXIT_NO_BATCH}  no such batch, or its batch object is unreadable
  {EXIT_USAGE}  bad arguments or unsafe batch id
  {EXIT_TOO_LATE_TO_CANCEL}  the batch had already finished (completed, failed or expired);
     its batch object is printed, unchanged

{FAILURE_EPILOG}"""

RESUME_EPILOG = f"""\
exit codes:
  0  the lines with no result were published again; the counts are printed
  {EXIT_USAGE}  bad arguments or unsafe batch id
  {EXIT_CANNOT_RESUME}  no such batch, it has ended or is cancelling, or its input was not kept

{FAILURE_EPILOG}"""


def exit_code(batch: BatchObject | None, *, waited: bool) -> int:
    """The command's exit code for what it printed (see ``EPILOG``)."""
    if batch is None:
        return EXIT_NO_BATCH
    if not waited:
        return 0
    return EXIT_CODES.get(batch.status, EXIT_NOT_TERMINAL)


def cancel_exit_code(batch: BatchObject | None) -> int:
    """``cancel``'s exit code for what it printed (see ``CANCEL_EPILOG``)."""
    if batch is None:
        return EXIT_NO_BATCH
    return 0 if batch.status in CANCELLED_STATUSES else EXIT_TOO_LATE_TO_CANCEL
