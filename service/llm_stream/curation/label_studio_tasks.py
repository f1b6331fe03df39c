"""What Label Studio shows of a chat line: its task (custom_id kept) and the labelling config.

The config shows the conversation as a dialogue, the answer as text a reviewer may rewrite in
place, whether the answer validates against its JSON Schema (and why not), a verdict (accepted,
rejected, gold), a 1-5 rating and a note. Embeddings have no answer to read:
``labelling_config`` refuses them.
"""

from __future__ import annotations

from typing import Any

from llm_stream.curation.joined import JoinedLine
from llm_stream.errors import LlmStreamError

#: Endpoints whose answers Label Studio can review (text in, text out).
REVIEWABLE = ("/v1/chat/completions", "/v1/completions")

CHAT_CONFIG = """<View>
  <Header value="Conversation"/>
  <Paragraphs name="dialogue" value="$dialogue" layout="dialogue" nameKey="role" textKey="content"/>
  <Header value="Answer (edit it to correct it)"/>
  <Text name="answer" value="$answer"/>
  <Header value="Schema check"/>
  <Text name="schema_check" value="$schema_check"/>
  <TextArea name="corrected" toName="answer" value="$answer" editable="true" rows="8"
            maxSubmissions="1"/>
  <Choices name="verdict" toName="answer" choice="single" showInline="true" required="true">
    <Choice value="accepted" hotkey="a"/>
    <Choice value="rejected" hotkey="r"/>
    <Choice value="gold" hotkey="g"/>
  </Choices>
  <Rating name="rating" toName="answer" maxRating="5"/>
  <TextArea name="note" toName="answer" rows="2" placeholder="Note"/>
</View>
"""


class NotReviewableError(LlmStreamError, ValueError):
    """A batch whose endpoint has no text answer to review (embeddings)."""


def labelling_config(endpoint: str) -> str:
    if endpoint not in REVIEWABLE:
        raise NotReviewableError(
            f"{endpoint} answers are not reviewed in Label Studio; only {', '.join(REVIEWABLE)}"
        )
    return CHAT_CONFIG


def _text(content: Any) -> str:
    """A message's content as text: its text parts joined (images are not shown)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def dialogue(request: dict[str, Any] | None) -> list[dict[str, str]]:
    """The request as turns: a chat's messages, or a completion's prompt as the user's."""
    if request is None:
        return []
    messages = request.get("messages")
    if isinstance(messages, list):
        return [
            {"role": str(m.get("role", "")), "content": _text(m.get("content"))}
            for m in messages
            if isinstance(m, dict)
        ]
    prompt = request.get("prompt")
    return [{"role": "user", "content": prompt if isinstance(prompt, str) else str(prompt)}]


def schema_check(problems: list[str] | None) -> str:
    """What the task shows of the answer's schema problems (``export.schema_problems``)."""
    if problems is None:
        return "no schema"
    return f"does not validate: {'; '.join(problems)}" if problems else "validates"


def task_of(line: JoinedLine, batch_id: str, problems: list[str] | None = None) -> dict[str, Any]:
    """One Label Studio task; ``custom_id`` and ``batch_id`` travel in its data, with why the
    answer breaks its schema (``problems``; None: it has none)."""
    return {
        "data": {
            "batch_id": batch_id,
            "custom_id": line.custom_id,
            "dialogue": dialogue(line.request),
            "answer": line.answer or "",
            "schema_check": schema_check(problems),
        }
    }
