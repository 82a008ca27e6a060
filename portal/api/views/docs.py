"""Readable API docs rendered on the server from the OpenAPI schema: no script, no CDN."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .api import api

METHODS = ("get", "post", "put", "patch", "delete")


@require_GET
def docs(request: HttpRequest) -> HttpResponse:
    schema = api.get_openapi_schema(path_prefix=request.path.removesuffix("docs"))
    context = {
        "info": schema["info"],
        "operations": _operations(schema),
        "models": {
            name: _pretty(model)
            for name, model in schema.get("components", {}).get("schemas", {}).items()
        },
        "openapi_url": request.path.removesuffix("docs") + "openapi.json",
    }
    return render(request, "api/docs.html", context)


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    operations = []
    for path, methods in schema["paths"].items():
        for method in METHODS:
            operation = methods.get(method)
            if operation is not None:
                operations.append(_operation(path, method, operation))
    return operations


def _operation(path: str, method: str, operation: dict[str, Any]) -> dict[str, Any]:
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    return {
        "anchor": operation.get("operationId", f"{method}-{path}"),
        "method": method.upper(),
        "path": path,
        "summary": operation.get("summary", ""),
        "description": operation.get("description", ""),
        "parameters": [
            {
                "name": parameter["name"],
                "where": parameter["in"],
                "required": parameter.get("required", False),
                "description": parameter.get("description", "")
                or parameter.get("schema", {}).get("description", ""),
            }
            for parameter in operation.get("parameters", [])
        ],
        "body": _pretty(body["schema"]) if "schema" in body else "",
        "responses": [
            {"status": status, "schema": _pretty(_json_schema(response))}
            for status, response in operation.get("responses", {}).items()
        ],
    }


def _json_schema(response: dict[str, Any]) -> Any:
    return response.get("content", {}).get("application/json", {}).get("schema")


def _pretty(schema: Any) -> str:
    if schema is None:
        return ""
    return json.dumps(schema, indent=2).replace("#/components/schemas/", "")
