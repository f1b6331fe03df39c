"""OpenAI's chat fine-tuning format: one example per line, ``{"messages": [...]}`` ending with
the assistant's answer, and the rules OpenAI documents for it, checked on every line written.

The rules (OpenAI's fine-tuning guide, "Preparing your dataset" and its data-check notebook):
each message has a known role (system, developer, user, assistant, tool) and no unknown keys;
content is a non-empty string or a non-empty list of parts, except an assistant message that
carries ``tool_calls``; an example has at least one assistant message; an assistant's
``weight`` is 0 or 1. Ours adds that the last message is the assistant's: the answer trained on.
"""

from __future__ import annotations

from typing import Any

from llm_stream.curation.joined import JoinedLine

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id", "weight"})


def example_of(line: JoinedLine) -> dict[str, Any] | None:
    """The fine-tuning example of a chat line: its request's messages and the final answer
    (the reviewer's correction where there is one); None when the line has no chat answer."""
    request = line.request
    answer = line.final_answer
    if request is None or answer is None:
        return None
    messages = request.get("messages")
    if not isinstance(messages, list):
        return None
    kept = [
        {key: value for key, value in message.items() if key in MESSAGE_KEYS}
        for message in messages
        if isinstance(message, dict)
    ]
    example: dict[str, Any] = {"messages": [*kept, {"role": "assistant", "content": answer}]}
    tools = request.get("tools")
    if isinstance(tools, list) and tools:
        example["tools"] = tools
    return example


def problems(example: Any) -> list[str]:
    """What breaks the format in ``example``; empty when it is a valid training line."""
    if not isinstance(example, dict):
        return ["an example is a JSON object"]
    found: list[str] = []
    unknown = set(example) - {"messages", "tools", "parallel_tool_calls"}
    if unknown:
        found.append(f"unknown keys {sorted(unknown)}")
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*found, "messages is a non-empty list"]
    for number, message in enumerate(messages):
        found.extend(f"message {number}: {problem}" for problem in _message_problems(message))
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    if "assistant" not in roles:
        found.append("no assistant message")
    elif roles[-1] != "assistant":
        found.append("the last message is not the assistant's")
    return found


def _message_problems(message: Any) -> list[str]:
    if not isinstance(message, dict):
        return ["not an object"]
    found = []
    role = message.get("role")
    if role not in ROLES:
        found.append(f"unknown role {role!r}")
    unknown = set(message) - MESSAGE_KEYS
    if unknown:
        found.append(f"unknown keys {sorted(unknown)}")
    content = message.get("content")
    calls_tools = role == "assistant" and bool(message.get("tool_calls"))
    if not calls_tools and not _has_content(content):
        found.append("empty content")
    if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
        found.append("weight is 0 or 1, on an assistant message")
    return found


def _has_content(content: Any) -> bool:
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):
        return bool(content) and all(isinstance(part, dict) and part for part in content)
    return False
