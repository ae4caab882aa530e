"""One n8n node ↔ one flowpin trigger or step(s), both ways. Pure.

n8n → flowpin translates only what has the same meaning in flowpin, and only when every
parameter of the node is understood; otherwise `Untranslatable` says why and the caller keeps
the node verbatim as an `n8n` step. flowpin → n8n writes current n8n node versions
(`fresh_*`); nodes that came from n8n and were not edited are restored from the annotation
instead (see `n8n.py`), so these generators only matter for new or edited steps.

Edges are not set here: a translation says which flowpin edge field each n8n output feeds
(`outputs`), and `n8n.py` wires them.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.interop.expressions import (
    Resolve,
    Untranslatable,
    is_expression,
    template_parts,
    translate,
    translate_template,
    translate_value,
)
from controller.model import jsonsafe
from controller.model.durations import parse_duration
from controller.model.schedule import validate_cron
from controller.model.templates import TemplateSyntaxError, find_templates

STICKY = "n8n-nodes-base.stickyNote"
WEBHOOK = "n8n-nodes-base.webhook"
SCHEDULE = "n8n-nodes-base.scheduleTrigger"
CRON = "n8n-nodes-base.cron"
MANUAL = "n8n-nodes-base.manualTrigger"
HTTP = "n8n-nodes-base.httpRequest"
WAIT = "n8n-nodes-base.wait"
IF = "n8n-nodes-base.if"
SWITCH = "n8n-nodes-base.switch"
SET = "n8n-nodes-base.set"
NOOP = "n8n-nodes-base.noOp"
STOP = "n8n-nodes-base.stopAndError"
TRIGGERS = frozenset({WEBHOOK, SCHEDULE, CRON, MANUAL})

# Node keys that are presentation or identity, with no effect on what a node does.
PRESENTATION = frozenset({"id", "name", "position", "notesInFlow", "webhookId", "color"})
# Node keys a translated step represents (the rest make the node untranslatable).
_BEHAVIOUR = frozenset(
    {"type", "typeVersion", "parameters", "notes", "retryOnFail", "maxTries", "waitBetweenTries"}
    | {"onError", "continueOnFail", "disabled", "alwaysOutputData", "executeOnce"}
)
_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


@dataclass
class Translation:
    """What a node becomes: one step (a chain of condition steps for a Switch) or a
    trigger. `outputs[i]` maps an edge field of body i (`next`, `condition.then`,
    `condition.else`, `onError`) to the n8n output index it reads, or to `chain:<j>` for
    the next link of a Switch chain."""

    bodies: list[dict[str, Any]]
    outputs: list[dict[str, int | str]] = field(default_factory=list)
    kind: str = "step"  # "step" | "trigger"
    notes: list[str] = field(default_factory=list)  # warnings about meaning that changed


def node_id(workflow: str, name: str) -> str:
    """A stable UUID for a node flowpin creates, so repeated exports are identical."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"flowpin:{workflow}:{name}"))


def _version(node: Mapping[str, Any]) -> float:
    value = node.get("typeVersion", 1)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _params(node: Mapping[str, Any]) -> dict[str, Any]:
    params = node.get("parameters", {})
    if not isinstance(params, dict):
        raise Untranslatable("parameters is not an object")
    return params


def _only(params: Mapping[str, Any], allowed: set[str], what: str) -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        raise Untranslatable(f"{what} parameter {extra[0]!r} has no flowpin counterpart")


def _empty(value: Any) -> bool:
    return value in (None, {}, [], "")


# --------------------------------------------------------------------------- n8n → flowpin


def n8n_step(node: Mapping[str, Any]) -> Translation:
    """The verbatim fallback: type, typeVersion, parameters and credentials kept as they
    are; only output 0 becomes `next`."""
    block: dict[str, Any] = {"nodeType": node.get("type")}
    if "typeVersion" in node:
        block["typeVersion"] = node["typeVersion"]
    if "parameters" in node:
        block["parameters"] = node["parameters"]
    if "credentials" in node:
        block["credentials"] = node["credentials"]
    body: dict[str, Any] = {"type": "n8n", "n8n": block}
    if isinstance(node.get("notes"), str) and node["notes"]:
        body["description"] = node["notes"]
    return Translation([body], [{"next": 0}])


def translate_trigger(node: Mapping[str, Any], workflow: str, timezone: str | None) -> Translation:
    kind = node.get("type")
    params = _params(node)
    extra = set(node) - _BEHAVIOUR - PRESENTATION
    if extra:
        raise Untranslatable(f"node field {sorted(extra)[0]!r} has no flowpin counterpart")
    if kind == MANUAL:
        return Translation([{"type": "manual"}], kind="trigger")
    if kind == WEBHOOK:
        method = params.get("httpMethod", "GET")
        notes = [
            "flowpin webhooks are POST requests signed with HMAC-SHA256: create the Secret "
            f"{workflow}-webhook (key `secret`) and sign deliveries (docs/runs.md)"
        ]
        if method != "POST":
            notes.append(f"the n8n webhook took {method} requests; flowpin takes POST only")
        if params.get("authentication", "none") != "none":
            notes.append("the n8n webhook's authentication is replaced by the HMAC signature")
        hook = {"type": "webhook", "secretRef": {"name": f"{workflow}-webhook"}}
        return Translation([hook], kind="trigger", notes=notes)
    if kind in (SCHEDULE, CRON):
        cron = _schedule_cron(params) if kind == SCHEDULE else _cron_node(params)
        problem = validate_cron(cron)
        if problem:
            raise Untranslatable(f"schedule {cron!r}: {problem}")
        trigger: dict[str, Any] = {"type": "schedule", "schedule": cron}
        notes = []
        if timezone:
            trigger["timezone"] = timezone
        else:
            notes.append("n8n used the instance's time zone; flowpin schedules run in UTC")
        return Translation([trigger], kind="trigger", notes=notes)
    raise Untranslatable(f"{kind} is not a trigger flowpin has")


def _int(value: Any, what: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise Untranslatable(f"{what} {value!r} is not a whole number")


def _schedule_cron(params: Mapping[str, Any]) -> str:
    _only(params, {"rule"}, "schedule")
    rule = params.get("rule", {"interval": [{}]})
    intervals = rule.get("interval", [{}]) if isinstance(rule, dict) else None
    if not isinstance(intervals, list) or len(intervals) != 1 or not isinstance(intervals[0], dict):
        raise Untranslatable("a schedule with several rules (flowpin: one cron per trigger)")
    item = intervals[0]
    unit = item.get("field", "days")
    minute = _int(item.get("triggerAtMinute"), "triggerAtMinute", 0)
    hour = _int(item.get("triggerAtHour"), "triggerAtHour", 0)
    if unit == "cronExpression":
        expression = item.get("expression")
        if not isinstance(expression, str) or is_expression(expression):
            raise Untranslatable("a computed cron expression")
        fields = expression.split()
        if len(fields) == 6 and fields[0] == "0":
            fields = fields[1:]
        if len(fields) != 5:
            raise Untranslatable(f"cron {expression!r} has seconds (flowpin: 5 fields)")
        return " ".join(fields)
    if unit == "minutes":
        every = _int(item.get("minutesInterval"), "minutesInterval", 5)
        return f"*/{every} * * * *" if every != 1 else "* * * * *"
    if unit == "hours":
        every = _int(item.get("hoursInterval"), "hoursInterval", 1)
        return f"{minute} */{every} * * *" if every != 1 else f"{minute} * * * *"
    if unit == "days":
        every = _int(item.get("daysInterval"), "daysInterval", 1)
        return f"{minute} {hour} */{every} * *" if every != 1 else f"{minute} {hour} * * *"
    if unit == "weeks":
        if _int(item.get("weeksInterval"), "weeksInterval", 1) != 1:
            raise Untranslatable("every N weeks has no cron equivalent")
        days = item.get("triggerAtDay", [0])
        if not isinstance(days, list) or not days or not all(isinstance(d, int) for d in days):
            raise Untranslatable("triggerAtDay is not a list of weekdays")
        return f"{minute} {hour} * * {','.join(str(d) for d in days)}"
    if unit == "months":
        every = _int(item.get("monthsInterval"), "monthsInterval", 1)
        day = _int(item.get("triggerAtDayOfMonth"), "triggerAtDayOfMonth", 1)
        return f"{minute} {hour} {day} {'*' if every == 1 else f'*/{every}'} *"
    raise Untranslatable(f"a schedule every {unit} has no 5-field cron equivalent")


def _cron_node(params: Mapping[str, Any]) -> str:
    _only(params, {"triggerTimes"}, "cron")
    times = params.get("triggerTimes", {}).get("item", [])
    if not isinstance(times, list) or len(times) != 1 or not isinstance(times[0], dict):
        raise Untranslatable("a cron node with several (or no) trigger times")
    item = times[0]
    mode = item.get("mode", "everyDay")
    hour = _int(item.get("hour"), "hour", 14)
    minute = _int(item.get("minute"), "minute", 0)
    if mode == "everyMinute":
        return "* * * * *"
    if mode == "everyHour":
        return f"{minute} * * * *"
    if mode == "everyDay":
        return f"{minute} {hour} * * *"
    if mode == "everyWeek":
        return f"{minute} {hour} * * {_int(item.get('weekday'), 'weekday', 1)}"
    if mode == "everyMonth":
        return f"{minute} {hour} {_int(item.get('dayOfMonth'), 'dayOfMonth', 1)} * *"
    if mode == "custom":
        fields = str(item.get("cronExpression", "")).split()
        if len(fields) == 6 and fields[0] in ("0", "*"):
            return " ".join(fields[1:])
        if len(fields) == 5:
            return " ".join(fields)
        raise Untranslatable(f"cron {item.get('cronExpression')!r}")
    raise Untranslatable(f"cron mode {mode!r} has no 5-field equivalent")


def translate_step(node: Mapping[str, Any], resolve: Resolve) -> Translation:
    """The flowpin step(s) for a node, or `Untranslatable`."""
    extra = set(node) - _BEHAVIOUR - PRESENTATION - {"credentials"}
    if extra:
        raise Untranslatable(f"node field {sorted(extra)[0]!r} has no flowpin counterpart")
    for flag in ("alwaysOutputData", "executeOnce"):
        if node.get(flag):
            raise Untranslatable(f"{flag} has no flowpin counterpart")
    if node.get("disabled") is True:
        translation = Translation([{"type": "noop"}], [{"next": 0}])
        translation.notes.append("disabled in n8n: a noop step that passes through")
        return _with_notes(node, translation)
    kind = node.get("type")
    if kind == NOOP:
        _only(_params(node), set(), "noOp")
        translation = Translation([{"type": "noop"}], [{"next": 0}])
    elif kind == STOP:
        params = _params(node)
        _only(params, {"errorMessage", "errorType"}, "stopAndError")
        if params.get("errorType", "errorMessage") != "errorMessage":
            raise Untranslatable("an error object (flowpin fails with a message)")
        message = translate_template(params.get("errorMessage", ""), resolve)
        translation = Translation([{"type": "fail", "fail": {"message": message}}], [{}])
    elif kind == HTTP:
        translation = _http(node, resolve)
    elif kind == WAIT:
        translation = _wait(node, resolve)
    elif kind == SET:
        translation = _set(node, resolve)
    elif kind == IF:
        translation = _if(node, resolve)
    elif kind == SWITCH:
        translation = _switch(node, resolve)
    else:
        raise Untranslatable(f"{kind} has no flowpin step type")
    if node.get("credentials") and kind != STOP:
        raise Untranslatable("it uses n8n credentials (flowpin steps read no n8n credentials)")
    if kind not in (IF, SWITCH, NOOP, STOP):
        _error_handling(node, translation.bodies[0], translation.outputs[0])
    elif node.get("retryOnFail") or node.get("onError") or node.get("continueOnFail"):
        raise Untranslatable("retry or error settings on a node that cannot fail")
    return _with_notes(node, translation)


def _with_notes(node: Mapping[str, Any], translation: Translation) -> Translation:
    notes = node.get("notes")
    if isinstance(notes, str) and notes:
        translation.bodies[0]["description"] = notes
    return translation


def _error_handling(node: Mapping[str, Any], body: dict[str, Any], outputs: dict[str, Any]) -> None:
    if node.get("retryOnFail"):
        tries = node.get("maxTries", 3)
        delay = node.get("waitBetweenTries", 1000)
        if isinstance(tries, str) and tries.isdigit():
            tries = int(tries)
        if isinstance(delay, str) and delay.isdigit():
            delay = int(delay)
        if not isinstance(tries, int) or not isinstance(delay, int) or tries < 1 or delay < 0:
            raise Untranslatable("retry settings are not numbers")
        retry: dict[str, Any] = {"limit": tries - 1, "backoff": "fixed"}
        if delay > 0:
            retry["initialDelay"] = f"{delay}ms"
        body["retry"] = retry
    on_error = node.get("onError")
    if on_error is None and node.get("continueOnFail") is True:
        on_error = "continueRegularOutput"
    if on_error == "continueRegularOutput":
        body["onError"] = "continue"
    elif on_error == "continueErrorOutput":
        outputs["onError"] = 1
    elif on_error not in (None, "stopWorkflow"):
        raise Untranslatable(f"onError {on_error!r}")


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Untranslatable(f"{what} is not text")
    return value


def _http(node: Mapping[str, Any], resolve: Resolve) -> Translation:
    if not 3 <= _version(node) < 5:
        raise Untranslatable(f"HTTP Request version {node.get('typeVersion')} (3 to 4.x map)")
    params = _params(node)
    allowed = {"method", "url", "authentication", "sendQuery", "sendHeaders", "specifyHeaders"}
    allowed |= {"headerParameters", "sendBody", "contentType", "specifyBody", "bodyParameters"}
    allowed |= {"jsonBody", "body", "options"}
    _only(params, allowed, "HTTP Request")
    if params.get("authentication", "none") != "none":
        raise Untranslatable("it authenticates with n8n credentials")
    if params.get("sendQuery"):
        raise Untranslatable("query parameters (write them into the URL)")
    http: dict[str, Any] = {"url": translate_template(_string(params.get("url"), "url"), resolve)}
    if not http["url"]:
        raise Untranslatable("the URL is empty")
    method = params.get("method", "GET")
    if method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        raise Untranslatable(f"method {method!r}")
    if method != "GET":
        http["method"] = method
    if params.get("sendHeaders"):
        if params.get("specifyHeaders", "keypair") != "keypair":
            raise Untranslatable("headers given as JSON text")
        headers: dict[str, str] = {}
        for pair in params.get("headerParameters", {}).get("parameters", []):
            name = _string(pair.get("name"), "a header name")
            headers[name] = translate_template(_string(pair.get("value", ""), "header"), resolve)
        if headers:
            http["headers"] = headers
    if params.get("sendBody"):
        http["body"] = _http_body(params, resolve)
    options = params.get("options", {})
    if not isinstance(options, dict):
        raise Untranslatable("options that are not an object")
    if set(options) - {"timeout"}:
        raise Untranslatable(f"request option {sorted(set(options) - {'timeout'})[0]!r}")
    if "timeout" in options:
        http["timeout"] = f"{_int(options['timeout'], 'timeout', 0)}ms"
    return Translation([{"type": "http", "http": http}], [{"next": 0}])


def _http_body(params: Mapping[str, Any], resolve: Resolve) -> Any:
    content = params.get("contentType", "json")
    if content == "raw":
        return translate_template(_string(params.get("body", ""), "body"), resolve)
    if content != "json":
        raise Untranslatable(f"a {content} body (flowpin sends JSON or text)")
    if params.get("specifyBody", "keypair") == "json":
        text = params.get("jsonBody", "")
        if is_expression(text):
            return _templated_json(text, resolve)
        try:
            return jsonsafe.loads(text) if isinstance(text, str) else text
        except ValueError as error:
            raise Untranslatable(f"the JSON body does not parse ({error})") from None
    body: dict[str, Any] = {}
    for pair in params.get("bodyParameters", {}).get("parameters", []):
        name = _string(pair.get("name"), "a body field name")
        body[name] = translate_template(pair.get("value", ""), resolve)
    return body


_PLACEHOLDER = re.compile(r"@@flowpin(\d+)@@")


def _templated_json(text: str, resolve: Resolve) -> Any:
    """`={"id": "{{ $json.id }}"}` → {"id": "${ string(...) }"}: expressions inside JSON
    strings become templates (n8n puts text there, hence `string()`); anywhere else the body
    is not JSON before evaluation, and is refused."""
    codes: dict[str, str] = {}
    pieces: list[str] = []
    for index, (is_code, part) in enumerate(template_parts(text[1:])):
        if is_code:
            codes[str(index)] = part
            pieces.append(f"@@flowpin{index}@@")
        else:
            pieces.append(part)
    try:
        parsed = jsonsafe.loads("".join(pieces))
    except jsonsafe.JSONInputError as error:
        if not error.syntax:
            raise Untranslatable(f"a JSON body that is not usable JSON ({error.message})") from None
        raise Untranslatable("a JSON body with expressions outside JSON strings") from None

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            if any(_PLACEHOLDER.search(str(k)) for k in value):
                raise Untranslatable("a JSON body with expressions in its keys")
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if not isinstance(value, str):
            return value
        found = list(_PLACEHOLDER.finditer(value))
        if not found:
            return value.replace("${", "$${")
        if len(found) == 1 and found[0].group(0) == value:
            return f"${{ string({translate(codes[found[0].group(1)], resolve)}) }}"
        out, at = [], 0
        for match in found:
            out.append(value[at : match.start()].replace("${", "$${"))
            out.append(f"${{ {translate(codes[match.group(1)], resolve)} }}")
            at = match.end()
        out.append(value[at:].replace("${", "$${"))
        return "".join(out)

    return fill(parsed)


def _wait(node: Mapping[str, Any], resolve: Resolve) -> Translation:
    params = _params(node)
    version = _version(node)
    resume = params.get("resume", "timeInterval")
    if resume == "timeInterval":
        _only(params, {"resume", "amount", "unit"}, "Wait")
        amount = params.get("amount", 1 if version < 1.1 else 5)
        unit = params.get("unit", "hours" if version < 1.1 else "seconds")
        if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
            raise Untranslatable(f"wait amount {amount!r}")
        if unit not in _UNITS:
            raise Untranslatable(f"wait unit {unit!r}")
        seconds = amount * _UNITS[unit]
        duration = f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds * 1000:g}ms"
        if "e" in duration:
            raise Untranslatable(f"wait of {amount} {unit}")
        wait: dict[str, Any] = {"duration": duration}
    elif resume == "specificTime":
        _only(params, {"resume", "dateTime"}, "Wait")
        moment = _string(params.get("dateTime", ""), "dateTime")
        until = translate_template(moment, resolve)
        if not is_expression(moment) and not _has_zone(moment):
            raise Untranslatable(f"time {moment!r} has no time zone")
        wait = {"until": until}
    else:
        raise Untranslatable(f"a wait that resumes on {resume} (flowpin waits for time only)")
    return Translation([{"type": "wait", "wait": wait}], [{"next": 0}])


def _has_zone(text: str) -> bool:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _set(node: Mapping[str, Any], resolve: Resolve) -> Translation:
    params = _params(node)
    version = _version(node)
    assigned: dict[str, str] = {}
    if version >= 3.3:
        _only(params, {"mode", "assignments", "includeOtherFields", "include", "options"}, "Set")
        if params.get("mode", "manual") != "manual":
            raise Untranslatable("a Set node in JSON mode")
        if params.get("include", "all") != "all" or not _empty(params.get("options", {})):
            raise Untranslatable("Set options")
        for item in params.get("assignments", {}).get("assignments", []):
            name = _var_name(item.get("name"))
            value = item.get("value")
            kind = item.get("type", "string")
            if kind in ("array", "object") and isinstance(value, str) and not is_expression(value):
                try:
                    value = jsonsafe.loads(value)
                except ValueError:
                    raise Untranslatable(f"{name}: {kind} value does not parse") from None
            assigned[name] = translate_value(value, resolve)
    elif version < 3:
        _only(params, {"values", "keepOnlySet", "options"}, "Set")
        if not _empty(params.get("options", {})):
            raise Untranslatable("Set options")
        values = params.get("values", {})
        for kind in ("string", "number", "boolean"):
            for item in values.get(kind, []):
                assigned[_var_name(item.get("name"))] = translate_value(item.get("value"), resolve)
        if set(values) - {"string", "number", "boolean"}:
            raise Untranslatable("Set values other than string, number and boolean")
    else:
        raise Untranslatable(f"Set version {node.get('typeVersion')} (1, 2 and 3.3+ map)")
    if not assigned:
        raise Untranslatable("a Set node that sets nothing")
    return Translation([{"type": "set", "set": assigned}], [{"next": 0}])


def _var_name(name: Any) -> str:
    if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        raise Untranslatable(f"field name {name!r} (flowpin vars are identifiers)")
    return name


# ---- If / Switch conditions

_STRING_OPS = {
    "equals": "{l} == {r}",
    "notEquals": "{l} != {r}",
    "contains": "{l}.contains({r})",
    "notContains": "!{l}.contains({r})",
    "startsWith": "{l}.startsWith({r})",
    "notStartsWith": "!{l}.startsWith({r})",
    "endsWith": "{l}.endsWith({r})",
    "notEndsWith": "!{l}.endsWith({r})",
    "regex": "{l}.matches({r})",
    "notRegex": "!{l}.matches({r})",
    "empty": '{l} == ""',
    "notEmpty": '{l} != ""',
}
_NUMBER_OPS = {
    "equals": "{l} == {r}",
    "notEquals": "{l} != {r}",
    "gt": "{l} > {r}",
    "lt": "{l} < {r}",
    "gte": "{l} >= {r}",
    "lte": "{l} <= {r}",
}
_BOOLEAN_OPS = {
    "true": "{l} == true",
    "false": "{l} == false",
    "equals": "{l} == {r}",
    "notEquals": "{l} != {r}",
}
# What CEL's has() accepts: a field selection on a reference.
_SELECT = re.compile(r"^(inputs|vars|steps\[\"[^\"]+\"\]\.output)\S*\.[A-Za-z_][A-Za-z0-9_]*$")
_FILTER_OPS = {"string": _STRING_OPS, "number": _NUMBER_OPS, "boolean": _BOOLEAN_OPS}


def _operand(value: Any, kind: str, resolve: Resolve) -> str:
    if kind == "number" and isinstance(value, str) and not is_expression(value):
        try:
            value = float(value) if "." in value else int(value)
        except ValueError:
            raise Untranslatable(f"{value!r} is not a number") from None
    if kind == "boolean" and isinstance(value, str) and value in ("true", "false"):
        value = value == "true"
    return translate_value(value, resolve)


def _grouped(text: str) -> str:
    return f"({text})" if " " in text and not text.startswith("(") else text


def filter_to_cel(conditions: Any, resolve: Resolve) -> str:
    """An If v2 / Switch v3 filter (`{options, conditions, combinator}`) as one CEL
    expression."""
    if not isinstance(conditions, dict):
        raise Untranslatable("conditions is not an object")
    options = conditions.get("options", {})
    if options.get("caseSensitive", True) is not True:
        raise Untranslatable("case-insensitive comparison")
    if options.get("typeValidation", "strict") != "strict":
        raise Untranslatable("loose type validation (JavaScript coercion)")
    parts: list[str] = []
    for item in conditions.get("conditions", []):
        operator = item.get("operator", {})
        kind = operator.get("type", "string")
        operation = operator.get("operation", "equals")
        left = translate_value(item.get("leftValue", ""), resolve)
        if operation in ("exists", "notExists"):
            if not _SELECT.match(left):
                raise Untranslatable(f"{operation} on {left} (CEL's has() needs a field)")
            parts.append(f"{'!' if operation == 'notExists' else ''}has({left})")
            continue
        pattern = _FILTER_OPS.get(kind, {}).get(operation)
        if pattern is None:
            raise Untranslatable(f"{kind} operation {operation!r}")
        right = _operand(item.get("rightValue", ""), kind, resolve) if "{r}" in pattern else ""
        parts.append(pattern.format(l=_grouped(left), r=_grouped(right)))
    if not parts:
        raise Untranslatable("no conditions")
    combinator = conditions.get("combinator", "and")
    if combinator not in ("and", "or"):
        raise Untranslatable(f"combinator {combinator!r}")
    joiner = " && " if combinator == "and" else " || "
    if len(parts) == 1:
        return parts[0]
    return joiner.join(f"({p})" if " " in p else p for p in parts)


# If v1 names its operations differently; the CEL they become is the same.
_V1_NAMES = {
    "equal": "equals",
    "notEqual": "notEquals",
    "smaller": "lt",
    "smallerEqual": "lte",
    "larger": "gt",
    "largerEqual": "gte",
    "isEmpty": "empty",
    "isNotEmpty": "notEmpty",
}


def _if_v1(params: Mapping[str, Any], resolve: Resolve) -> str:
    _only(params, {"conditions", "combineOperation"}, "If")
    parts: list[str] = []
    for kind, items in params.get("conditions", {}).items():
        if kind not in _FILTER_OPS:
            raise Untranslatable(f"{kind} conditions")
        for item in items:
            operation = item.get("operation", "equal")
            pattern = _FILTER_OPS[kind].get(_V1_NAMES.get(operation, operation))
            if pattern is None:
                raise Untranslatable(f"{kind} operation {operation!r}")
            default: Any = {"number": 0, "string": "", "boolean": False}[kind]
            left = _operand(item.get("value1", default), kind, resolve)
            right = _operand(item.get("value2", default), kind, resolve)
            parts.append(pattern.format(l=_grouped(left), r=_grouped(right)))
    if not parts:
        raise Untranslatable("no conditions")
    joiner = " || " if params.get("combineOperation", "all") == "any" else " && "
    return parts[0] if len(parts) == 1 else joiner.join(f"({p})" for p in parts)


def _if(node: Mapping[str, Any], resolve: Resolve) -> Translation:
    params = _params(node)
    version = _version(node)
    if version < 2:
        when = _if_v1(params, resolve)
    elif version < 3:
        _only(params, {"conditions", "options", "looseTypeValidation"}, "If")
        if params.get("looseTypeValidation") or not _empty(params.get("options", {})):
            raise Untranslatable("If options (loose type validation)")
        when = filter_to_cel(params.get("conditions"), resolve)
    else:
        raise Untranslatable(f"If version {node.get('typeVersion')}")
    body = {"type": "condition", "condition": {"when": when}}
    return Translation([body], [{"condition.then": 0, "condition.else": 1}])


def _switch(node: Mapping[str, Any], resolve: Resolve) -> Translation:
    """Switch (rules mode, first match) → a chain of condition steps: rule i's `then` is
    output i, its `else` the next rule, the last `else` the fallback output."""
    if not 3 <= _version(node) < 4:
        raise Untranslatable(f"Switch version {node.get('typeVersion')} (3.x maps)")
    params = _params(node)
    _only(params, {"mode", "rules", "options", "looseTypeValidation"}, "Switch")
    if params.get("mode", "rules") != "rules":
        raise Untranslatable("a Switch whose output is computed by an expression")
    options = params.get("options", {})
    if options.get("allMatchingOutputs"):
        raise Untranslatable("sends items to every matching output (flowpin takes one path)")
    if set(options) - {"fallbackOutput", "allMatchingOutputs", "renameFallbackOutput"}:
        raise Untranslatable("Switch options")
    if params.get("looseTypeValidation") or options.get("ignoreCase"):
        raise Untranslatable("loose or case-insensitive Switch rules")
    rules = params.get("rules", {}).get("values", [])
    if not isinstance(rules, list) or not rules:
        raise Untranslatable("a Switch without rules")
    fallback = options.get("fallbackOutput", "none")
    bodies: list[dict[str, Any]] = []
    outputs: list[dict[str, int | str]] = []
    for index, rule in enumerate(rules):
        when = filter_to_cel(rule.get("conditions"), resolve)
        bodies.append({"type": "condition", "condition": {"when": when}})
        wiring: dict[str, int | str] = {"condition.then": index}
        if index + 1 < len(rules):
            wiring["condition.else"] = f"chain:{index + 1}"
        elif fallback == "extra":
            wiring["condition.else"] = len(rules)
        elif fallback != "none":
            raise Untranslatable(f"fallback output {fallback!r}")
        outputs.append(wiring)
    return Translation(bodies, outputs)


# --------------------------------------------------------------------------- flowpin → n8n


def _seconds(text: str) -> tuple[float, str]:
    seconds = parse_duration(text).total_seconds()
    for unit in ("days", "hours", "minutes"):
        if seconds % _UNITS[unit] == 0:
            return seconds / _UNITS[unit], unit
    return seconds, "seconds"


def _n8n_text(value: Any) -> Any:
    """A flowpin template string as n8n text: `${ e }` becomes `{{ e }}` (the CEL is kept
    as written; n8n evaluates it as JavaScript, which agrees for simple expressions)."""
    if not isinstance(value, str) or "${" not in value:
        return value.replace("$${", "${") if isinstance(value, str) else value
    try:
        found = find_templates(value)
    except TemplateSyntaxError:
        return value
    if not found:
        return value.replace("$${", "${")
    out, at = [], 0
    for template in found:
        out.append(value[at : template.start].replace("$${", "${"))
        out.append(f"{{{{ {template.expression} }}}}")
        at = template.end
    out.append(value[at:].replace("$${", "${"))
    return "=" + "".join(out)


def _n8n_json_body(body: Any) -> str:
    """A JSON body for `jsonBody`: an n8n expression (`={...{{ e }}...}`) when fields hold
    templates, plain JSON otherwise."""
    templated = False

    def convert(value: Any) -> Any:
        nonlocal templated
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        text = _n8n_text(value)
        if isinstance(text, str) and text.startswith("=") and text != value:
            templated = True
            return text[1:]
        return text

    converted = json.dumps(convert(body))
    return "=" + converted if templated else converted


def fresh_step_node(step: Mapping[str, Any], workflow: str, name: str) -> dict[str, Any]:
    """An n8n node for a flowpin step that has no (usable) n8n original."""
    kind = step.get("type")
    node: dict[str, Any] = {"parameters": {}, "id": node_id(workflow, name), "name": name}
    params: dict[str, Any] = node["parameters"]
    if kind == "http":
        http = step.get("http", {})
        node |= {"type": HTTP, "typeVersion": 4.2}
        if http.get("method", "GET") != "GET":
            params["method"] = http["method"]
        params["url"] = _n8n_text(http.get("url", ""))
        if http.get("headers"):
            params["sendHeaders"] = True
            params["headerParameters"] = {
                "parameters": [
                    {"name": k, "value": _n8n_text(v)} for k, v in http["headers"].items()
                ]
            }
        if "body" in http:
            params["sendBody"] = True
            if isinstance(http["body"], str):
                params |= {"contentType": "raw", "body": _n8n_text(http["body"])}
            else:
                params |= {"specifyBody": "json", "jsonBody": _n8n_json_body(http["body"])}
        params["options"] = (
            {"timeout": int(parse_duration(http["timeout"]).total_seconds() * 1000)}
            if "timeout" in http
            else {}
        )
    elif kind == "wait":
        wait = step.get("wait", {})
        node |= {"type": WAIT, "typeVersion": 1.1}
        if "duration" in wait:
            amount, unit = _seconds(wait["duration"])
            params |= {"amount": int(amount) if amount.is_integer() else amount, "unit": unit}
        else:
            params |= {"resume": "specificTime", "dateTime": _n8n_text(wait.get("until", ""))}
    elif kind == "condition":
        when = step.get("condition", {}).get("when", "true")
        node |= {"type": IF, "typeVersion": 2}
        params |= {
            "conditions": {
                "options": {"caseSensitive": True, "leftValue": "", "typeValidation": "strict"},
                "conditions": [
                    {
                        "id": node_id(workflow, f"{name}/when"),
                        "leftValue": f"={{{{ {when} }}}}",
                        "rightValue": "",
                        "operator": {"type": "boolean", "operation": "true", "singleValue": True},
                    }
                ],
                "combinator": "and",
            },
            "options": {},
        }
    elif kind == "set":
        node |= {"type": SET, "typeVersion": 3.4}
        params |= {
            "assignments": {
                "assignments": [
                    {
                        "id": node_id(workflow, f"{name}/{var}"),
                        "name": var,
                        "type": _literal_type(expression),
                        "value": _literal_or_expression(expression),
                    }
                    for var, expression in step.get("set", {}).items()
                ]
            },
            "options": {},
        }
    elif kind == "fail":
        node |= {"type": STOP, "typeVersion": 1}
        message = (step.get("fail") or {}).get("message", "failed by a fail step")
        params["errorMessage"] = _n8n_text(message)
    elif kind == "n8n":
        block = step.get("n8n", {})
        node["type"] = block.get("nodeType")
        if "typeVersion" in block:
            node["typeVersion"] = block["typeVersion"]
        if "parameters" in block:
            node["parameters"] = block["parameters"]
        else:
            del node["parameters"]
        if "credentials" in block:
            node["credentials"] = block["credentials"]
    else:  # noop, log
        node |= {"type": NOOP, "typeVersion": 1}
        message = (step.get("log") or {}).get("message")
        if message:
            node["notes"] = message
    if step.get("description"):
        node["notes"] = step["description"]
    retry = step.get("retry")
    if isinstance(retry, dict) and kind != "n8n":
        node["retryOnFail"] = True
        node["maxTries"] = int(retry.get("limit", 2)) + 1
        delay = retry.get("initialDelay")
        if delay:
            node["waitBetweenTries"] = int(parse_duration(delay).total_seconds() * 1000)
    on_error = step.get("onError")
    if kind != "n8n" and isinstance(on_error, str):
        if on_error == "continue":
            node["onError"] = "continueRegularOutput"
        elif on_error.startswith("goto:"):
            node["onError"] = "continueErrorOutput"
    return node


def _literal_type(expression: str) -> str:
    try:
        value = jsonsafe.loads(expression)
    except ValueError:
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def _literal_or_expression(expression: str) -> Any:
    try:
        value = jsonsafe.loads(expression)
    except ValueError:
        return f"={{{{ {expression} }}}}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def fresh_trigger_node(trigger: Mapping[str, Any], workflow: str, name: str) -> dict[str, Any]:
    kind = trigger.get("type")
    node: dict[str, Any] = {"parameters": {}, "id": node_id(workflow, name), "name": name}
    if kind == "webhook":
        node |= {"type": WEBHOOK, "typeVersion": 2, "webhookId": node_id(workflow, name + "/hook")}
        node["parameters"] = {
            "httpMethod": "POST",
            "path": f"{workflow}/{trigger.get('id', name)}",
            "options": {},
        }
    elif kind == "schedule":
        node |= {"type": SCHEDULE, "typeVersion": 1.2}
        node["parameters"] = {
            "rule": {"interval": [{"field": "cronExpression", "expression": trigger["schedule"]}]}
        }
    else:
        node |= {"type": MANUAL, "typeVersion": 1}
    return node
