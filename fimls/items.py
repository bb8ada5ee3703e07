"""Turning suggestions into LSP inline-completion and classic completion items."""

from __future__ import annotations

from lsprotocol import types

from fimls.document import Snapshot
from fimls.engine import Suggestion
from fimls.prompt import indentation, word_before

LABEL_WIDTH = 60
MULTILINE_MARKER = " …"


def _position(snap: Snapshot, column: int) -> types.Position:
    return types.Position(line=snap.line, character=snap.to_client(column))


def inline_items(snap: Snapshot, suggestions: list[Suggestion]) -> types.InlineCompletionList:
    """Ghost-text items: insert at the cursor, replacing trailing closers if any."""
    items = []
    for suggestion in suggestions:
        closers = snap.line_suffix[: suggestion.replace]
        items.append(
            types.InlineCompletionItem(
                insert_text=suggestion.text + closers,
                range=types.Range(
                    start=_position(snap, snap.column),
                    end=_position(snap, snap.column + suggestion.replace),
                ),
            )
        )
    return types.InlineCompletionList(items=items)


def escape_snippet(text: str) -> str:
    """Escape ``\\``, ``$`` and ``}`` so a snippet inserts ``text`` literally."""
    return text.replace("\\", "\\\\").replace("$", "\\$").replace("}", "\\}")


def label_for(text: str) -> str:
    """First non-blank line, shortened, with a marker when more lines follow."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    label = lines[0] if lines else ""
    if len(label) > LABEL_WIDTH:
        label = label[: LABEL_WIDTH - 1] + "…"
    return label + MULTILINE_MARKER if len(lines) > 1 else label


def _documentation(snap: Snapshot, word: str, new_text: str, markdown: bool) -> types.MarkupContent | str:
    line_start = snap.line_prefix[: len(snap.line_prefix) - len(word)]
    if markdown:
        return types.MarkupContent(
            kind=types.MarkupKind.Markdown, value=f"```{snap.language_id}\n{line_start}{new_text}\n```"
        )
    return line_start + new_text


def reindent_for_snippet(text: str, line_prefix: str) -> str:
    """Undo the indentation a snippet engine adds to lines after the first.

    Clients that cannot insert "as is" (Neovim 0.11, VS Code snippets) prefix every
    further line of a snippet with the cursor line's indentation.
    """
    indent = indentation(line_prefix)
    if not indent or "\n" not in text:
        return text
    first, *rest = text.split("\n")
    return "\n".join([first, *(line[len(indent) :] if line.startswith(indent) else line for line in rest)])


def _edit_text(new_text: str, snap: Snapshot, snippets: bool, as_is: bool) -> str:
    if not snippets:
        return new_text
    return escape_snippet(new_text if as_is else reindent_for_snippet(new_text, snap.line_prefix))


def completion_list(
    snap: Snapshot,
    suggestions: list[Suggestion],
    *,
    snippets: bool,
    markdown: bool = True,
    as_is: bool = False,
) -> types.CompletionList:
    """Classic items whose edit covers the typed part of the word, so client filters keep them."""
    word = word_before(snap.line_prefix)
    items = []
    for rank, suggestion in enumerate(suggestions):
        closers = snap.line_suffix[: suggestion.replace]
        new_text = word + suggestion.text + closers
        edit_range = types.Range(
            start=_position(snap, snap.column - len(word)),
            end=_position(snap, snap.column + suggestion.replace),
        )
        items.append(
            types.CompletionItem(
                label=label_for(new_text),
                kind=types.CompletionItemKind.Text,
                detail="fimls",
                documentation=_documentation(snap, word, new_text, markdown),
                filter_text=new_text.partition("\n")[0] or word,
                sort_text=f"0{rank}",
                preselect=rank == 0,
                text_edit=types.TextEdit(
                    range=edit_range, new_text=_edit_text(new_text, snap, snippets, as_is)
                ),
                insert_text_format=(
                    types.InsertTextFormat.Snippet if snippets else types.InsertTextFormat.PlainText
                ),
                insert_text_mode=types.InsertTextMode.AsIs,
            )
        )
    return types.CompletionList(is_incomplete=True, items=items)
