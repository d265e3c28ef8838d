"""The stdio direct path dumps our tools' results without pydantic; it must say exactly what
``model_dump`` says (the end-to-end parity test compares whole sessions; this pins the shapes)."""

from __future__ import annotations

from datetime import UTC, datetime

from mcp.types import CallToolResult, ImageContent, TextContent

from jetpack.server.stdio import _plain_dump
from jetpack.tools.common import as_result


def sdk_dump(result: CallToolResult) -> dict[str, object]:
    return result.model_dump(by_alias=True, mode="json", exclude_none=True, exclude={"result_type"})


def test_plain_results_dump_as_the_sdk_dumps_them() -> None:
    results = [
        as_result({"id": "jp-a3f8", "state": "claimed", "memories": [{"id": 1, "score": 0.5}], "unread_mail": 0}),
        as_result({"id": None, "reason": "nothing is ready"}),
        CallToolResult(content=[TextContent(type="text", text="boom")], is_error=True),
        CallToolResult(content=[TextContent(type="text", text="a"), TextContent(type="text", text="[mail] 1 urgent")]),
    ]
    for result in results:
        assert _plain_dump(result) == sdk_dump(result)
        assert list(_plain_dump(result) or {}) == list(sdk_dump(result))  # key order too: the bytes match


def test_other_shapes_are_left_to_the_sdk() -> None:
    image = CallToolResult(content=[ImageContent(type="image", data="AAAA", mime_type="image/png")])
    with_meta = CallToolResult(content=[], _meta={"k": "v"})
    annotated = CallToolResult(content=[TextContent(type="text", text="x", annotations={"priority": 1.0})])
    assert _plain_dump(image) is None and _plain_dump(with_meta) is None and _plain_dump(annotated) is None
    odd = CallToolResult(content=[], structured_content={"at": datetime(2026, 1, 1, tzinfo=UTC)})
    assert _plain_dump(odd) is not None  # the caller falls back to model_dump when json cannot encode it
