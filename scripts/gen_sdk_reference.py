"""Write docs/sdk.md from the SDK's docstrings (run: .venv/bin/python scripts/gen_sdk_reference.py)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import raypipe

# What a sentinel default (a bare ``object()``) means, by its name in the SDK's module; its
# repr (``<object object at 0x…>``) would change the page on every run.
SENTINELS = {"_KEEP": "unchanged", "_UNSET": "not given"}


class _Shown:
    """A default as the page shows it: ``<unchanged>``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"<{self.text}>"


def _sentinel(obj: object, default: object) -> _Shown | None:
    """How to show ``default`` if it is a bare ``object()`` sentinel of ``obj``'s module."""
    if type(default) is not object:
        return None
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    for name, value in vars(module).items() if module else ():
        if value is default:
            return _Shown(SENTINELS.get(name, name.strip("_").lower()))
    return _Shown("sentinel")


def _signature(obj: object) -> str:
    try:
        sig = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    params = []
    for p in sig.parameters.values():
        shown = _sentinel(obj, p.default)
        params.append(p if shown is None else p.replace(default=shown))
    return str(sig.replace(parameters=params))


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
