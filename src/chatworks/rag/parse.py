"""Turn a file's bytes into plain text plus the structure chunking needs.

Covers txt, Markdown (ATX headings), HTML (stdlib parser: headings, blocks), PDF (pypdf, one
text layer per page) and DOCX (stdlib zip + XML: paragraphs, Heading styles). All offsets
(heading starts, page starts) index into `ParsedDocument.text`.
Not covered: OCR of scanned PDFs (they fail with a clear error), tables as tables, images,
PDF outlines as headings, legacy .doc.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePath
from xml.etree import ElementTree

from chatworks.rag.errors import UnreadableDocument, UnsupportedFileType

# Extension -> file type name (the names `Settings.allowed_file_types` uses).
FILE_TYPES = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}


@dataclass(frozen=True)
class Heading:
    start: int  # offset in ParsedDocument.text where the heading (line or element) starts
    level: int  # 1 = top level
    title: str


@dataclass(frozen=True)
class ParsedDocument:
    text: str
    title: str
    headings: list[Heading] = field(default_factory=list)
    page_starts: list[int] = field(default_factory=list)  # page n starts at page_starts[n-1]


def file_type(filename: str) -> str:
    """The file type of `filename` from its extension, or UnsupportedFileType."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in FILE_TYPES:
        raise UnsupportedFileType(f"unsupported file type {suffix or '(none)'!r} for {filename}")
    return FILE_TYPES[suffix]


def parse_bytes(data: bytes, filename: str) -> ParsedDocument:
    """Extract text and structure. Raises UnsupportedFileType when the content does not match
    the extension, UnreadableDocument when it cannot be parsed or holds no text."""
    kind = file_type(filename)
    stem = PurePath(filename).stem
    if kind == "pdf":
        parsed = _parse_pdf(data, stem)
    elif kind == "docx":
        parsed = _parse_docx(data, stem)
    elif kind == "html":
        parsed = _parse_html(_decode(data, filename), stem)
    elif kind == "md":
        parsed = _parse_markdown(_decode(data, filename), stem)
    else:
        parsed = ParsedDocument(text=_decode(data, filename), title=stem)
    if not parsed.text.strip():
        raise UnreadableDocument(f"{filename}: no text found (scanned PDFs need OCR first)")
    return parsed


def _decode(data: bytes, filename: str) -> str:
    if b"\x00" in data:
        raise UnsupportedFileType(f"{filename} looks binary, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # the usual non-UTF-8 legacy text
    return text.replace("\r\n", "\n").replace("\r", "\n")


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[ \t]*$", re.MULTILINE | re.DOTALL)


def _parse_markdown(text: str, stem: str) -> ParsedDocument:
    fenced = [(m.start(), m.end()) for m in _FENCE.finditer(text)]
    headings = [
        Heading(start=m.start(), level=len(m.group(1)), title=m.group(2))
        for m in _ATX.finditer(text)
        if not any(a <= m.start() < b for a, b in fenced)  # "# comment" inside code
    ]
    title = next((h.title for h in headings if h.level == 1), stem)
    return ParsedDocument(text=text, title=title, headings=headings)


class _HtmlText(HTMLParser):
    """Collects visible-flow text with paragraph breaks at block elements. Text hidden with CSS
    is kept on purpose: it is where indirect prompt injections hide, so the scanner sees it."""

    # fmt: off
    BLOCKS = frozenset({
        "p", "div", "section", "article", "header", "footer", "main", "nav", "aside", "li",
        "ul", "ol", "dl", "dt", "dd", "table", "tr", "blockquote", "pre", "figure",
        "figcaption", "form", "fieldset", "address", "hr", "h1", "h2", "h3", "h4", "h5", "h6",
    })
    # fmt: on
    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.length = 0
        self.headings: list[Heading] = []
        self.title = ""
        self._skip = 0
        self._pre = 0
        self._in_title = False
        self._heading: tuple[int, int] | None = None  # (start, level) of the open heading

    def _emit(self, s: str) -> None:
        self.parts.append(s)
        self.length += len(s)

    def _at_line_start(self) -> bool:
        return not self.parts or self.parts[-1].endswith("\n")

    def _break(self, newlines: str = "\n\n") -> None:
        if not self.parts:
            return
        tail = "".join(self.parts[-2:])
        missing = len(newlines) - (len(tail) - len(tail.rstrip("\n")))
        if missing > 0:
            self._emit("\n" * missing)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "br":
            self._break("\n")
        elif tag in self.BLOCKS:
            self._break()
            self._pre += tag == "pre"
            if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
                self._heading = (self.length, int(tag[1]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCKS:
            self._pre -= tag == "pre" and self._pre > 0
            if self._heading and tag == f"h{self._heading[1]}":
                start, level = self._heading
                title = "".join(self.parts)[start:].strip()
                if title:
                    self.headings.append(Heading(start=start, level=level, title=title))
                self._heading = None
            self._break()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._skip:
            return
        if not self._pre:
            data = re.sub(r"\s+", " ", data)
            if self._at_line_start():
                data = data.lstrip()
        if data:
            self._emit(data)


def _parse_html(html: str, stem: str) -> ParsedDocument:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts).rstrip()
    first_h1 = next((h.title for h in parser.headings if h.level == 1), "")
    title = " ".join(parser.title.split()) or first_h1 or stem
    return ParsedDocument(text=text, title=title, headings=parser.headings)


def _parse_pdf(data: bytes, stem: str) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if not data.startswith(b"%PDF-"):
        raise UnsupportedFileType(f"{stem}.pdf is not a PDF file")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument(f"{stem}.pdf is encrypted")
        pages = [(page.extract_text() or "").replace("\r\n", "\n").strip() for page in reader.pages]
        meta_title = reader.metadata.title if reader.metadata else None
    except (PyPdfError, ValueError, KeyError) as e:
        raise UnreadableDocument(f"{stem}.pdf cannot be read: {e}") from e
    page_starts, offset = [], 0
    for text in pages:
        page_starts.append(offset)
        offset += len(text) + 2  # the "\n\n" that join() puts after every page but the last
    return ParsedDocument(
        text="\n\n".join(pages), title=(meta_title or "").strip() or stem, page_starts=page_starts
    )


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_MAX_XML_BYTES = 200_000_000  # refuse zip bombs: the upload limit applies to compressed bytes


def _zip_xml(archive: zipfile.ZipFile, name: str) -> ElementTree.Element | None:
    if name not in archive.namelist():
        return None
    if archive.getinfo(name).file_size > _MAX_XML_BYTES:
        raise UnreadableDocument(f"{name} in the DOCX is too large when decompressed")
    return ElementTree.fromstring(archive.read(name))


def _parse_docx(data: bytes, stem: str) -> ParsedDocument:
    if not data.startswith(b"PK"):
        raise UnsupportedFileType(f"{stem}.docx is not a DOCX (zip) file")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            body = _zip_xml(archive, "word/document.xml")
            core = _zip_xml(archive, "docProps/core.xml")
    except (zipfile.BadZipFile, ElementTree.ParseError) as e:
        raise UnreadableDocument(f"{stem}.docx cannot be read: {e}") from e
    if body is None:
        raise UnreadableDocument(f"{stem}.docx has no word/document.xml")
    paragraphs: list[str] = []
    headings: list[Heading] = []
    offset = 0
    for p in body.iter(f"{_W}p"):
        text = "".join(
            node.text or "" if node.tag == f"{_W}t" else "\t" if node.tag == f"{_W}tab" else "\n"
            for node in p.iter()
            if node.tag in (f"{_W}t", f"{_W}tab", f"{_W}br", f"{_W}cr")
        ).strip()
        if not text:
            continue
        style = p.find(f"{_W}pPr/{_W}pStyle")
        style_id = style.get(f"{_W}val", "") if style is not None else ""
        level = _docx_heading_level(style_id)
        if level:
            headings.append(Heading(start=offset, level=level, title=text))
        paragraphs.append(text)
        offset += len(text) + 2
    core_title = core.findtext(_DC_TITLE) if core is not None else None
    first_h1 = next((h.title for h in headings if h.level == 1), "")
    title = (core_title or "").strip() or first_h1 or stem
    return ParsedDocument(text="\n\n".join(paragraphs), title=title, headings=headings)


def _docx_heading_level(style_id: str) -> int:
    """Word's built-in style ids: "Title", "Heading1".."Heading9" (localised names keep ids)."""
    if style_id == "Title":
        return 1
    match = re.fullmatch(r"Heading([1-9])", style_id)
    return int(match.group(1)) if match else 0
