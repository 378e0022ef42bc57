"""Parsing real files of every supported type, made at test time: a PDF written with pypdf,
a DOCX written with python-docx, HTML and Markdown strings."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from chatworks.rag.errors import UnreadableDocument, UnsupportedFileType
from chatworks.rag.parse import parse_bytes


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for text in pages:
        page = writer.add_blank_page(width=612, height=792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
        )
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
        page[NameObject("/Contents")] = writer._add_object(stream)
    if title:
        writer.add_metadata({"/Title": title})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_pages_have_offsets() -> None:
    doc = parse_bytes(make_pdf(["First page text.", "Second page text."], "Manual"), "m.pdf")
    assert doc.title == "Manual"
    assert len(doc.page_starts) == 2
    first = doc.text[doc.page_starts[0] : doc.page_starts[1]]
    assert first.strip() == "First page text."
    assert doc.text[doc.page_starts[1] :] == "Second page text."


def test_docx_paragraphs_and_heading_styles() -> None:
    import docx

    document = docx.Document()
    document.add_heading("Guide", level=1)
    document.add_paragraph("Intro paragraph.")
    document.add_heading("Install", level=2)
    document.add_paragraph("Run the installer.")
    out = io.BytesIO()
    document.save(out)
    doc = parse_bytes(out.getvalue(), "guide.docx")
    assert doc.text == "Guide\n\nIntro paragraph.\n\nInstall\n\nRun the installer."
    assert [(h.level, h.title) for h in doc.headings] == [(1, "Guide"), (2, "Install")]
    assert all(doc.text[h.start :].startswith(h.title) for h in doc.headings)
    assert doc.title == "Guide"


def test_html_blocks_headings_and_skipped_elements() -> None:
    html = (
        "<html><head><title>Page &amp; co</title><style>p {}</style></head><body>"
        "<h1>Top</h1><p>Hello   <b>bold</b>\nworld</p><script>var x = 1;</script>"
        "<div style='display:none'>hidden note</div><h2>Next</h2><p>a<br>b</p></body></html>"
    )
    doc = parse_bytes(html.encode(), "page.html")
    assert doc.title == "Page & co"
    assert doc.text == "Top\n\nHello bold world\n\nhidden note\n\nNext\n\na\nb"
    assert [
        (h.level, h.title, doc.text[h.start : h.start + len(h.title)]) for h in doc.headings
    ] == [
        (1, "Top", "Top"),
        (2, "Next", "Next"),
    ]


def test_markdown_headings_skip_code_fences() -> None:
    md = "# Title\n\nText.\n\n```sh\n# a shell comment\n```\n\n## Part two ##\n\nMore.\r\n"
    doc = parse_bytes(md.encode(), "notes.md")
    assert [(h.level, h.title) for h in doc.headings] == [(1, "Title"), (2, "Part two")]
    assert doc.text[doc.headings[1].start :].startswith("## Part two")
    assert "\r" not in doc.text
    assert doc.title == "Title"


def test_text_decoding_falls_back_from_utf8() -> None:
    assert parse_bytes("caf\u00e9".encode("cp1252"), "a.txt").text == "caf\u00e9"
    assert parse_bytes("\ufeffhello".encode(), "a.txt").text == "hello"


@pytest.mark.parametrize(
    ("data", "name", "error"),
    [
        (b"text", "a.exe", UnsupportedFileType),
        (b"text", "noextension", UnsupportedFileType),
        (b"not a pdf", "a.pdf", UnsupportedFileType),
        (b"not a zip", "a.docx", UnsupportedFileType),
        (b"PK\x03\x04 broken zip", "a.docx", UnreadableDocument),
        (b"%PDF-1.7 garbage", "a.pdf", UnreadableDocument),
        (b"\x00\x01\x02", "a.txt", UnsupportedFileType),
        (b"  \n\n ", "a.txt", UnreadableDocument),
    ],
)
def test_bad_files_raise_typed_errors(data: bytes, name: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_bytes(data, name)


def test_pdf_without_text_layer_is_unreadable() -> None:
    with pytest.raises(UnreadableDocument, match="no text"):
        parse_bytes(make_pdf([""]), "scan.pdf")
