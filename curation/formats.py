"""Chat data formats in the wild, each turned into the conversation table's messages.

A converter takes one input record (a dict) and returns a list of ``Converted``
conversations (OASST trees give several, everything else one). A record that does not
fit raises ``BadRecord`` with a short reason code; ingest turns that into a reject row.

Tool use is normalised to the Hermes function-calling convention: tool schemas in the
system prompt inside ``<tools></tools>``, assistant calls as ``<tool_call>{...}</tool_call>``,
tool results in a ``tool`` turn inside ``<tool_response></tool_response>``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .schema import CATEGORIES

FORMATS = ("sharegpt", "openai", "alpaca", "hh", "oasst", "qa", "prompt", "toolbench", "bfcl")

TOOLS_PREAMBLE = (
    "You are a function-calling assistant. The functions you may call are listed as JSON schemas in the "
    "tools block below. To call one, write a JSON object with its name and arguments inside tool_call tags; "
    "each result comes back inside tool_response tags. Do not invent argument values.\n"
)


class BadRecord(Exception):
    """A record that cannot become a conversation: ``reason`` is the rejects code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class Converted:
    messages: list[dict]
    own_id: str | None = None
    generator: str | None = None
    category: str | None = None
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers

def _text(value: Any, where: str) -> str:
    """Content as text: a string, or a list of text parts; anything else is not text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(p, dict) for p in value):
        parts = []
        for p in value:
            kind = p.get("type", "text")
            body = p.get("text", p.get("value"))
            if kind != "text" or not isinstance(body, str):
                raise BadRecord("content_not_text", f"{where}: a '{kind}' part is not text")
            parts.append(body)
        return "".join(parts)
    raise BadRecord("content_not_text", f"{where}: content is {type(value).__name__}, not a string")


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def tool_call_text(name: str, arguments: Any) -> str:
    args = _json_value(arguments)
    if args is None or args == "":
        args = {}
    body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def tool_response_text(content: str, name: str | None = None) -> str:
    if content.lstrip().startswith("<tool_response>"):
        return content
    if name:
        body = json.dumps({"name": name, "content": _json_value(content)}, ensure_ascii=False)
    else:
        body = content
    return f"<tool_response>\n{body}\n</tool_response>"


def _normalise_tool(tool: Any) -> dict:
    if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        return tool
    if isinstance(tool, dict) and "name" in tool:
        fn = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
        return {"type": "function", "function": fn}
    raise BadRecord("bad_tools", f"tool schema without a name: {str(tool)[:80]}")


def tools_system_text(tools: Any) -> str | None:
    """The Hermes ``<tools>`` block for a record's tool list (JSON string or list)."""
    tools = _json_value(tools)
    if tools in (None, "", []):
        return None
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list):
        raise BadRecord("bad_tools", "the tools field is neither a list nor a JSON list")
    listed = "\n".join(json.dumps(_normalise_tool(t), ensure_ascii=False) for t in tools)
    return f"{TOOLS_PREAMBLE}<tools>\n{listed}\n</tools>"


def _with_tools(messages: list[dict], tools: Any) -> list[dict]:
    block = tools_system_text(tools)
    if block is None:
        return messages
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": f"{messages[0]['content'].rstrip()}\n\n{block}"}
        return [first] + messages[1:]
    return [{"role": "system", "content": block}] + messages


def _append(messages: list[dict], role: str, content: str) -> None:
    """Append a turn; consecutive assistant turns (text then a call) merge into one."""
    if messages and role == "assistant" and messages[-1]["role"] == "assistant":
        prev = messages[-1]["content"]
        messages[-1] = {"role": "assistant", "content": f"{prev}\n{content}" if prev else content}
    else:
        messages.append({"role": role, "content": content})


def _own_id(rec: dict) -> str | None:
    for key in ("id", "ans_id", "uid", "query_id", "question_id"):
        value = rec.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) != "":
            return str(value)
    return None


def _declared_category(rec: dict) -> tuple[str | None, dict]:
    value = rec.get("category")
    if isinstance(value, str) and value in CATEGORIES:
        return value, {}
    return None, ({"source_category": value} if value not in (None, "") else {})


def _generator(rec: dict) -> str | None:
    for key in ("generator", "model"):
        value = rec.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _done(rec: dict, messages: list[dict], **extra) -> list[Converted]:
    category, more = _declared_category(rec)
    extra.update(more)
    if isinstance(rec.get("dataset"), str):
        extra["dataset"] = rec["dataset"]
    return [Converted(messages, _own_id(rec), _generator(rec), category, extra)]


# ----------------------------------------------------------------------------- converters

_SHAREGPT_ROLES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bard": "assistant",
    "bing": "assistant", "model": "assistant", "system": "system",
    "observation": "tool", "tool": "tool", "function": "tool", "function_response": "tool",
}


def from_sharegpt(rec: dict) -> list[Converted]:
    turns = rec.get("conversations", rec.get("conversation", rec.get("messages")))
    if not isinstance(turns, list):
        raise BadRecord("unknown_shape", "ShareGPT record without a list of conversations")
    messages: list[dict] = []
    if isinstance(rec.get("system"), str) and rec["system"].strip():
        messages.append({"role": "system", "content": rec["system"]})
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise BadRecord("unknown_shape", f"turn {i} is not an object")
        who = str(turn.get("from", turn.get("role", ""))).lower()
        value = turn.get("value", turn.get("content"))
        if who == "function_call":
            call = _json_value(_text(value, f"turn {i}"))
            if not isinstance(call, dict) or "name" not in call:
                raise BadRecord("malformed_tool_call", f"turn {i}: function_call is not a JSON call")
            _append(messages, "assistant", tool_call_text(call["name"], call.get("arguments", {})))
            continue
        role = _SHAREGPT_ROLES.get(who)
        if role is None:
            raise BadRecord("unknown_role", f"turn {i}: unknown speaker '{who}'")
        content = _text(value, f"turn {i}")
        if role == "tool":
            content = tool_response_text(content)
        _append(messages, role, content)
    return _done(rec, _with_tools(messages, rec.get("tools")))


def _openai_messages(raw: list, tools: Any) -> list[dict]:
    messages: list[dict] = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict):
            raise BadRecord("unknown_shape", f"message {i} is not an object")
        role = str(msg.get("role", "")).lower()
        content = msg.get("content")
        if role in ("function", "tool", "observation", "ipython"):
            _append(messages, "tool", tool_response_text(_text(content, f"message {i}"), msg.get("name")))
            continue
        if role not in ("system", "user", "assistant"):
            raise BadRecord("unknown_role", f"message {i}: unknown role '{role}'")
        calls = []
        if isinstance(msg.get("function_call"), dict):
            calls.append(msg["function_call"])
        for tc in msg.get("tool_calls") or []:
            fn = tc.get("function", tc) if isinstance(tc, dict) else None
            if not isinstance(fn, dict) or "name" not in fn:
                raise BadRecord("malformed_tool_call", f"message {i}: tool call without a name")
            calls.append(fn)
        if role == "assistant" and isinstance(content, list):
            text = _assistant_parts(content, i)
        elif content is None and calls:
            text = ""
        else:
            text = _text(content, f"message {i}")
        pieces = [text] if text else []
        for call in calls:
            if call.get("name") == "Finish":  # ToolBench's pseudo-tool that carries the final answer
                args = _json_value(call.get("arguments"))
                if isinstance(args, dict) and isinstance(args.get("final_answer"), str):
                    pieces.append(args["final_answer"])
                    continue
            pieces.append(tool_call_text(call["name"], call.get("arguments", {})))
        _append(messages, role, "\n".join(pieces))
    return _with_tools(messages, tools)


def _assistant_parts(parts: list, i: int) -> str:
    """Assistant content given as typed parts: text, reasoning, tool_call."""
    out = []
    for p in parts:
        if not isinstance(p, dict):
            raise BadRecord("content_not_text", f"message {i}: a content part is not an object")
        kind, value = p.get("type", "text"), p.get("value", p.get("text"))
        if not isinstance(value, str):
            raise BadRecord("content_not_text", f"message {i}: a '{kind}' part is not text")
        if kind == "text":
            out.append(value)
        elif kind == "reasoning":
            out.append(f"<REASONING>\n{value.strip()}\n</REASONING>")
        elif kind == "tool_call":
            call = _json_value(value)
            if not isinstance(call, dict) or "name" not in call:
                raise BadRecord("malformed_tool_call", f"message {i}: tool_call part is not a JSON call")
            out.append(tool_call_text(call["name"], call.get("arguments", {})))
        else:
            raise BadRecord("content_not_text", f"message {i}: a '{kind}' part is not text")
    return "\n".join(out)


def from_openai(rec: dict) -> list[Converted]:
    raw = rec.get("messages")
    if not isinstance(raw, list):
        raise BadRecord("unknown_shape", "record without a list of messages")
    if raw and isinstance(raw[0], dict) and "from" in raw[0]:
        return from_sharegpt(rec)
    return _done(rec, _openai_messages(raw, rec.get("tools", rec.get("functions"))))


def from_toolbench(rec: dict) -> list[Converted]:
    gen = rec.get("answer_generation")
    if not isinstance(gen, dict):
        raise BadRecord("unknown_shape", "ToolBench answer without answer_generation")
    if not isinstance(gen.get("train_messages"), list) or not gen["train_messages"]:
        raise BadRecord("no_trace", f"ToolBench answer without a trace (valid_data={gen.get('valid_data')})")
    raw = gen["train_messages"][-1]  # the last chain is the complete trace
    messages = _openai_messages(raw, gen.get("function"))
    return [Converted(messages, None, None, None, {"finish_type": gen.get("finish_type"), "valid": rec.get("win")})]


_ALPACA_OUT = ("output", "response", "completion")


def from_alpaca(rec: dict) -> list[Converted]:
    instruction = rec.get("instruction")
    if instruction is None:
        raise BadRecord("unknown_shape", "Alpaca record without an instruction")
    instruction = _text(instruction, "instruction")
    extra: dict = {}
    inp, out = rec.get("input"), next((rec[k] for k in _ALPACA_OUT if k in rec), None)
    if out is None and isinstance(rec.get("instances"), list) and rec["instances"]:
        first = rec["instances"][0]  # self-instruct seed tasks
        inp, out = first.get("input"), first.get("output")
        extra["instances"] = len(rec["instances"])
    user = instruction if not inp else f"{instruction}\n\n{_text(inp, 'input')}"
    messages = []
    if isinstance(rec.get("system"), str) and rec["system"].strip():
        messages.append({"role": "system", "content": rec["system"]})
    for q, a in rec.get("history") or []:
        messages += [{"role": "user", "content": _text(q, "history")}, {"role": "assistant", "content": _text(a, "history")}]
    messages.append({"role": "user", "content": user})
    if out is not None:
        messages.append({"role": "assistant", "content": _text(out, "output")})
    return _done(rec, messages, **extra)


_HH_SPLIT = re.compile(r"\n\n(Human|Assistant): ?")


def from_hh(rec: dict) -> list[Converted]:
    text = rec.get("chosen", rec.get("text"))
    if not isinstance(text, str):
        raise BadRecord("content_not_text", "hh record without a chosen text")
    parts = _HH_SPLIT.split(text)
    if parts[0].strip():
        raise BadRecord("unknown_shape", "text before the first Human: turn")
    messages = []
    for who, body in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if who == "Human" else "assistant", "content": body.strip()})
    if not messages:
        raise BadRecord("unknown_shape", "no Human:/Assistant: turns")
    return _done(rec, messages)


def from_oasst(rec: dict) -> list[Converted]:
    root = rec.get("prompt") if isinstance(rec.get("prompt"), dict) else rec
    if "replies" not in root and "text" not in root:
        raise BadRecord("unknown_shape", "OASST record without a message tree")
    tree_id = str(rec.get("message_tree_id", root.get("message_id", "")))
    out: list[Converted] = []

    def walk(node: dict, path: list[dict]) -> None:
        role = "user" if node.get("role") == "prompter" else "assistant"
        path = path + [{"role": role, "content": _text(node.get("text"), f"message {node.get('message_id')}")}]
        replies = [r for r in node.get("replies") or [] if isinstance(r, dict)]
        if not replies:
            out.append(Converted(path, f"{tree_id}:{node.get('message_id')}", None, None,
                                 {"tree_id": tree_id, "lang": node.get("lang")}))
        for child in replies:
            walk(child, path)

    walk(root, [])
    return out


def from_qa(rec: dict) -> list[Converted]:
    for q, a in (("question", "answer"), ("prompt", "response"), ("query", "answer"), ("input", "output")):
        if q in rec and a in rec:
            if rec[q] is None or rec[a] is None:
                raise BadRecord("missing_field", f"'{q}' or '{a}' is null")
            messages = [{"role": "user", "content": _text(rec[q], q)}, {"role": "assistant", "content": _text(rec[a], a)}]
            extra = {"goal": rec["goal"]} if isinstance(rec.get("goal"), str) else {}
            return _done(rec, messages, **extra)
    raise BadRecord("unknown_shape", "no question/answer pair")


_PROMPT_KEYS = ("prompt", "instruction", "query", "question", "text", "goal")


def from_prompt(rec: dict) -> list[Converted]:
    for key in _PROMPT_KEYS:
        if key in rec:
            if rec[key] is None:
                raise BadRecord("missing_field", f"'{key}' is null")
            messages = [{"role": "user", "content": _text(rec[key], key)}]
            return _done(rec, _with_tools(messages, rec.get("api_list") and _toolbench_apis(rec["api_list"])))
    raise BadRecord("unknown_shape", "no prompt field")


def _toolbench_apis(apis: list) -> list[dict]:
    tools = []
    for api in apis:
        if not isinstance(api, dict):
            continue
        props = {p.get("name"): {"type": str(p.get("type", "string")).lower(), "description": p.get("description", "")}
                 for p in (api.get("required_parameters") or []) + (api.get("optional_parameters") or []) if isinstance(p, dict)}
        required = [p.get("name") for p in api.get("required_parameters") or [] if isinstance(p, dict)]
        tools.append({"name": f"{api.get('api_name')}_for_{api.get('tool_name')}",
                      "description": (api.get("api_description") or "").strip(),
                      "parameters": {"type": "object", "properties": props, "required": required}})
    return tools


def from_bfcl(rec: dict) -> list[Converted]:
    question = rec.get("question")
    if not isinstance(question, list):
        raise BadRecord("unknown_shape", "BFCL record without a question list")
    messages: list[dict] = []
    for t, turn in enumerate(question):
        for m in turn if isinstance(turn, list) else [turn]:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user"):
                raise BadRecord("unknown_shape", f"question turn {t} is not a user message")
            messages.append({"role": m["role"], "content": _text(m.get("content"), f"question turn {t}")})
    return _done(rec, _with_tools(messages, rec.get("function")), turns=len(question))


CONVERTERS: dict[str, Callable[[dict], list[Converted]]] = {
    "sharegpt": from_sharegpt,
    "openai": from_openai,
    "alpaca": from_alpaca,
    "hh": from_hh,
    "oasst": from_oasst,
    "qa": from_qa,
    "prompt": from_prompt,
    "toolbench": from_toolbench,
    "bfcl": from_bfcl,
}


def detect_format(rec: Any) -> str | None:
    """The format of one record, from its keys; None when nothing fits."""
    if not isinstance(rec, dict):
        return None
    keys = set(rec)
    if "conversations" in keys or "conversation" in keys:
        return "sharegpt"
    if "messages" in keys and isinstance(rec["messages"], list):
        first = rec["messages"][0] if rec["messages"] else {}
        return "sharegpt" if isinstance(first, dict) and "from" in first else "openai"
    if "answer_generation" in keys:
        return "toolbench"
    if "message_tree_id" in keys or (isinstance(rec.get("prompt"), dict) and "replies" in rec["prompt"]):
        return "oasst"
    if isinstance(rec.get("chosen"), str) and rec["chosen"].lstrip("\n").startswith("Human:"):
        return "hh"
    if "question" in keys and ("function" in keys or isinstance(rec["question"], list)):
        return "bfcl"
    if "instruction" in keys and (keys & set(_ALPACA_OUT) or "instances" in keys):
        return "alpaca"
    if {"question", "answer"} <= keys or {"prompt", "response"} <= keys or {"query", "answer"} <= keys:
        return "qa"
    if keys & set(_PROMPT_KEYS[:4]):
        return "prompt"
    return None
