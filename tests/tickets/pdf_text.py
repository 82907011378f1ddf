"""The text of the PDFs Ticketera prints, read back without a PDF library (none is a dependency).

Enough of PDF for what fpdf2 writes: Flate-compressed page content streams whose text is shown with
`(...) Tj`, in an embedded TrueType font addressed by 2-byte glyph ids that the font's ToUnicode
CMap maps back to characters (or, with the Latin-1 core font fallback, plain Latin-1 strings).
Reading the glyphs back through the CMap is what a PDF viewer's copy-and-paste does, so text found
here is text a reader sees.
"""

from __future__ import annotations

import re
import zlib

_STREAM_START = re.compile(rb">>\s*stream\r?\n")
_SHOWN_STRING = re.compile(rb"\((?P<text>(?:\\.|[^\\)])*)\)\s*Tj", re.DOTALL)
_BFCHAR = re.compile(rb"<([0-9A-Fa-f]{4})>\s*<([0-9A-Fa-f]{4,})>")
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def page_count(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))


def _streams(pdf: bytes) -> list[tuple[bytes, bytes]]:
    """(dictionary, decoded data) of every stream fpdf2 wrote, compressed or not."""
    found = []
    position = 0
    while (match := _STREAM_START.search(pdf, position)) is not None:
        # The stream's dictionary runs from its object's header to the `>>` before `stream`.
        dictionary = pdf[pdf.rfind(b" obj", 0, match.start()) : match.start()]
        length = re.search(rb"/Length\s+(\d+)", dictionary)
        assert length is not None, dictionary
        end = match.end() + int(length[1])
        data = pdf[match.end() : end]
        if b"/FlateDecode" in dictionary:
            data = zlib.decompress(data)
        found.append((dictionary, data))
        # Past the data: binary stream bytes are never searched for the next stream's start.
        position = end
    return found


def _unescape(literal: bytes) -> bytes:
    out = bytearray()
    index = 0
    while index < len(literal):
        byte = literal[index : index + 1]
        if byte != b"\\":
            out += byte
            index += 1
            continue
        following = literal[index + 1 : index + 2]
        octal = re.match(rb"[0-7]{1,3}", literal[index + 1 : index + 4])
        if octal is not None:
            out.append(int(octal[0], 8) & 0xFF)
            index += 1 + len(octal[0])
        else:
            out += _ESCAPES.get(following, following)
            index += 2
    return bytes(out)


def pdf_text(pdf: bytes) -> str:
    """Every string the pages show, one per line, in the order they are drawn."""
    streams = _streams(pdf)
    glyphs: dict[bytes, str] = {}
    for _, data in streams:
        if b"begincmap" in data:
            for glyph, unicode in _BFCHAR.findall(data):
                glyphs[bytes.fromhex(glyph.decode())] = bytes.fromhex(unicode.decode()).decode("utf-16-be")
    lines = []
    for _, data in streams:
        if b"Tj" not in data or b"begincmap" in data:
            continue
        for match in _SHOWN_STRING.finditer(data):
            raw = _unescape(match["text"])
            if glyphs:
                lines.append("".join(glyphs.get(raw[i : i + 2], "\ufffd") for i in range(0, len(raw), 2)))
            else:
                lines.append(raw.decode("latin-1"))
    return "\n".join(lines)
