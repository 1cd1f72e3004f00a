"""Write docs/sdk.md from the SDK's docstrings (run: .venv/bin/python scripts/gen_sdk_reference.py)."""

from __future__ import annotations

import inspect
from pathlib import Path

import raypipe


def _signature(obj: object) -> str:
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def main() -> None:
    parts = [
        "# Python SDK reference (`import raypipe`)\n",
        "Generated from the docstrings by `scripts/gen_sdk_reference.py`; do not edit.\n\n",
        inspect.getdoc(raypipe) or "",
        "\n",
    ]
    for name in raypipe.__all__:
        obj = getattr(raypipe, name)
        kind = "class" if inspect.isclass(obj) else "function"
        parts.append(
            f"\n## {kind} `raypipe.{name}{_signature(obj) if kind == 'function' else ''}`\n\n"
        )
        parts.append((inspect.getdoc(obj) or "").strip() + "\n")
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for member, value in inspect.getmembers(obj):
                if member.startswith("_") or not (
                    inspect.isfunction(value) or isinstance(value, property)
                ):
                    continue
                doc = (inspect.getdoc(value) or "").strip()
                sig = _signature(value) if inspect.isfunction(value) else ""
                parts.append(f"\n### `{name}.{member}{sig}`\n\n{doc}\n")
    out = Path(__file__).resolve().parent.parent / "docs" / "sdk.md"
    out.write_text("".join(parts))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
