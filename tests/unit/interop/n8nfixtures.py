"""Small n8n workflows written for these tests (never copied from real exports)."""

from __future__ import annotations

from typing import Any


def node(name: str, kind: str, version: float = 1, **extra: Any) -> dict[str, Any]:
    params = extra.pop("parameters", {})
    position = extra.pop("position", [0, 0])
    return {
        "parameters": params,
        "id": f"id-{name.lower().replace(' ', '-')}",
        "name": name,
        "type": kind if "." in kind else f"n8n-nodes-base.{kind}",
        "typeVersion": version,
        "position": position,
        **extra,
    }


def link(*targets: str | tuple[str, int]) -> list[dict[str, Any]]:
    out = []
    for target in targets:
        name, index = target if isinstance(target, tuple) else (target, 0)
        out.append({"node": name, "type": "main", "index": index})
    return out


def workflow(
    nodes: list[dict[str, Any]], connections: dict[str, Any], **top: Any
) -> dict[str, Any]:
    return {
        "name": top.pop("name", "Lead intake"),
        "nodes": nodes,
        "connections": connections,
        "settings": top.pop("settings", {"executionOrder": "v1"}),
        "pinData": top.pop("pinData", {}),
        **top,
    }


def webhook(name: str = "Webhook") -> dict[str, Any]:
    return node(
        name,
        "webhook",
        2,
        parameters={"httpMethod": "POST", "path": "intake", "options": {}},
        webhookId="hook-1",
    )


def http(name: str, url: str, **extra: Any) -> dict[str, Any]:
    params = {"url": url, "options": {}, **extra.pop("parameters", {})}
    return node(name, "httpRequest", 4.2, parameters=params, **extra)


def if_node(
    name: str, left: str, operation: str, right: Any, kind: str = "string"
) -> dict[str, Any]:
    return node(
        name,
        "if",
        2,
        parameters={
            "conditions": {
                "options": {"caseSensitive": True, "leftValue": "", "typeValidation": "strict"},
                "conditions": [
                    {
                        "id": "c1",
                        "leftValue": left,
                        "rightValue": right,
                        "operator": {"type": kind, "operation": operation},
                    }
                ],
                "combinator": "and",
            },
            "options": {},
        },
    )


def slack(name: str) -> dict[str, Any]:
    return node(
        name,
        "slack",
        2.2,
        parameters={"channel": "#leads", "text": "={{ $json.email }}"},
        credentials={"slackApi": {"id": "cred-9", "name": "Team Slack"}},
    )


def sticky(name: str, text: str) -> dict[str, Any]:
    return node(name, "stickyNote", 1, parameters={"content": text, "height": 200, "width": 300})


def intake() -> dict[str, Any]:
    """Webhook → HTTP → If (then Slack, else Set) with a sticky note and a sub-node."""
    return workflow(
        [
            webhook(),
            http(
                "Fetch lead",
                "=https://crm.example/leads/{{ $json.body.id }}",
                retryOnFail=True,
                maxTries=4,
                waitBetweenTries=2000,
            ),
            if_node("Is hot", "={{ $json.score }}", "gt", 50, "number"),
            slack("Tell sales"),
            node(
                "Remember",
                "set",
                3.4,
                parameters={
                    "assignments": {
                        "assignments": [
                            {"id": "a1", "name": "tier", "type": "string", "value": "cold"},
                            {"id": "a2", "name": "count", "type": "number", "value": 3},
                        ]
                    },
                    "options": {},
                },
            ),
            sticky("Note", "## Lead intake\nRoutes hot leads to sales."),
            node(
                "Model",
                "@n8n/n8n-nodes-langchain.lmChatOpenAi",
                1,
                parameters={"model": "gpt-4o-mini"},
                credentials={"openAiApi": {"id": "cred-1", "name": "OpenAI"}},
            ),
        ],
        {
            "Webhook": {"main": [link("Fetch lead")]},
            "Fetch lead": {"main": [link("Is hot")]},
            "Is hot": {"main": [link("Tell sales"), link("Remember")]},
            "Model": {
                "ai_languageModel": [
                    [{"node": "Tell sales", "type": "ai_languageModel", "index": 0}]
                ]
            },
        },
        meta={"instanceId": "abc"},
        tags=[{"id": "t1", "name": "sales"}],
        versionId="v-1",
        pinData={"Webhook": [{"json": {"body": {"id": 7}}}]},
    )
