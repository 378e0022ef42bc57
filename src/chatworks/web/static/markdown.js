// A small, safe Markdown renderer for model output.
//
// Safety rule: every piece of source text is HTML-escaped before any markup is added, and the
// only markup added comes from this file. Links are emitted only for http(s) URLs. So model
// output such as `<img src=x onerror=alert(1)>` is shown as text, never parsed as HTML.
//
// Covers what chat answers use: headings, paragraphs, emphasis, inline code, fenced code with a
// light syntax highlighter, lists (nested), blockquotes, tables, rules and links. It deliberately
// does not cover raw HTML, images, reference-style links or footnotes.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => ESCAPES[ch]);
}

/** Render Markdown source to an HTML string that contains no markup from the source. */
export function renderMarkdown(source) {
  // NUL is our placeholder delimiter for inline code and links, so it may not come from input.
  const text = String(source ?? "").replace(/\r\n?/g, "\n").replace(/\u0000/g, "");
  return renderBlocks(text.split("\n"), false);
}

// ---------------------------------------------------------------------------------------------
// Blocks

const FENCE_RE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/;
const HEADING_RE = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const RULE_RE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE_RE = /^ {0,3}> ?/;
const ITEM_RE = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_SEP_RE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

const indentOf = (line) => line.match(/^\s*/)[0].length;

function isTableStart(lines, i) {
  return lines[i].includes("|") && i + 1 < lines.length &&
    lines[i + 1].includes("-") && lines[i + 1].includes("|") && TABLE_SEP_RE.test(lines[i + 1]);
}

function startsBlock(lines, i) {
  const line = lines[i];
  return FENCE_RE.test(line) || HEADING_RE.test(line) || RULE_RE.test(line) ||
    QUOTE_RE.test(line) || ITEM_RE.test(line) || isTableStart(lines, i);
}

// `tight` renders paragraphs without <p>, as inside list items that have no blank lines.
function renderBlocks(lines, tight) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      i++;
    } else if ((m = line.match(FENCE_RE))) {
      i = renderFence(lines, i, m, out);
    } else if ((m = line.match(HEADING_RE))) {
      const level = m[1].length;
      out.push(`<h${level}>${renderInline(m[2])}</h${level}>`);
      i++;
    } else if (RULE_RE.test(line)) {
      out.push("<hr>");
      i++;
    } else if (QUOTE_RE.test(line)) {
      const inner = [];
      while (i < lines.length && QUOTE_RE.test(lines[i])) inner.push(lines[i++].replace(QUOTE_RE, ""));
      out.push(`<blockquote>${renderBlocks(inner, false)}</blockquote>`);
    } else if (ITEM_RE.test(line)) {
      i = renderList(lines, i, out);
    } else if (isTableStart(lines, i)) {
      i = renderTable(lines, i, out);
    } else {
      const para = [line];
      i++;
      while (i < lines.length && lines[i].trim() && !startsBlock(lines, i)) para.push(lines[i++]);
      // Single newlines are kept as line breaks: chat answers (poems, addresses) rely on them.
      const html = para.map((l) => renderInline(l.trim())).join("<br>");
      out.push(tight ? html : `<p>${html}</p>`);
    }
  }
  return out.join("\n");
}

function renderFence(lines, start, match, out) {
  const [, fence, lang] = match;
  const code = [];
  let i = start + 1;
  // An unclosed fence runs to the end: that is what a half-streamed answer looks like.
  while (i < lines.length) {
    const close = lines[i].match(/^ {0,3}(`{3,}|~{3,})\s*$/);
    if (close && close[1][0] === fence[0] && close[1].length >= fence.length) {
      i++;
      break;
    }
    code.push(lines[i++]);
  }
  out.push(codeBlock(code.join("\n").replace(/\n+$/, ""), lang));
  return i;
}

function codeBlock(code, lang) {
  const safeLang = escapeHtml(lang.toLowerCase().replace(/[^\w+#.-]/g, ""));
  return (
    `<div class="code-block"><div class="code-head"><span class="code-lang">${safeLang || "text"}</span>` +
    `<button type="button" class="code-copy" data-copy-code aria-label="Copy code">Copy</button></div>` +
    `<pre><code>${highlight(code, lang)}</code></pre></div>`
  );
}

function renderList(lines, start, out) {
  const first = lines[start].match(ITEM_RE);
  const baseIndent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const isSibling = (m) => m && indentOf(m[1]) <= baseIndent + 1 && /\d/.test(m[2]) === ordered;
  const items = [];
  let loose = false;
  let i = start;
  while (i < lines.length) {
    const line = lines[i];
    const m = line.match(ITEM_RE);
    if (isSibling(m)) {
      items.push([m[3]]);
      i++;
    } else if (!line.trim()) {
      // A blank line continues the list only if more of it follows.
      const next = lines[i + 1];
      if (next === undefined || !(indentOf(next) > baseIndent || isSibling(next.match(ITEM_RE)))) break;
      loose = loose || isSibling(next.match(ITEM_RE));
      items.at(-1).push("");
      i++;
    } else if (indentOf(line) > baseIndent) {
      items.at(-1).push(line);
      i++;
    } else if (!m && !startsBlock(lines, i) && lines[i - 1].trim()) {
      items.at(-1).push(line); // lazy continuation of the item's paragraph
      i++;
    } else {
      break;
    }
  }
  const tag = ordered ? "ol" : "ul";
  const num = parseInt(first[2], 10);
  const startAttr = ordered && num !== 1 ? ` start="${num}"` : "";
  const body = items.map((item) => `<li>${renderItem(item, loose)}</li>`).join("");
  out.push(`<${tag}${startAttr}>${body}</${tag}>`);
  return i;
}

function renderItem(itemLines, loose) {
  const [head, ...rest] = itemLines;
  const nonEmpty = rest.filter((l) => l.trim());
  const cut = nonEmpty.length ? Math.min(...nonEmpty.map(indentOf)) : 0;
  const body = [head, ...rest.map((l) => l.slice(Math.min(cut, indentOf(l))))];
  const tight = !loose && !rest.includes("");
  return renderBlocks(body, tight);
}

function splitRow(line) {
  const cells = line.trim().replace(/^\|/, "").replace(/\|$/, "").split(/(?<!\\)\|/);
  return cells.map((c) => c.trim().replace(/\\\|/g, "|"));
}

function renderTable(lines, start, out) {
  const header = splitRow(lines[start]);
  const aligns = splitRow(lines[start + 1]).map((c) =>
    c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : c.startsWith(":") ? "left" : "",
  );
  const cell = (tag, text, col) => {
    const style = aligns[col] ? ` style="text-align:${aligns[col]}"` : "";
    return `<${tag}${style}>${renderInline(text)}</${tag}>`;
  };
  let i = start + 2;
  const rows = [];
  while (i < lines.length && lines[i].trim() && lines[i].includes("|")) {
    const cells = splitRow(lines[i++]);
    rows.push(`<tr>${header.map((_, c) => cell("td", cells[c] ?? "", c)).join("")}</tr>`);
  }
  const head = `<tr>${header.map((h, c) => cell("th", h, c)).join("")}</tr>`;
  out.push(`<div class="table-wrap"><table><thead>${head}</thead><tbody>${rows.join("")}</tbody></table></div>`);
  return i;
}

// ---------------------------------------------------------------------------------------------
// Inline

const SAFE_URL_RE = /^https?:\/\/[^\s]+$/i;

function renderInline(raw) {
  const slots = [];
  const keep = (html) => `\u0000${slots.push(html) - 1}\u0000`;
  let s = escapeHtml(raw);
  // Code spans first so nothing inside them is formatted.
  s = s.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_, __, code) => keep(`<code>${code.trim()}</code>`));
  // [label](url): a link only for http(s); anything else (javascript:, data:) keeps just the label.
  // URLs may contain balanced parentheses (Wikipedia does).
  s = s.replace(/\[([^\]]+)\]\(\s*((?:[^()\s]|\([^()\s]*\))+)(?:\s+&quot;[^)]*&quot;)?\s*\)/g, (_, label, url) =>
    SAFE_URL_RE.test(url) ? keep(anchor(url, label)) : label,
  );
  // Bare URLs. The text is already escaped, so `&amp;` is the only entity a URL may contain.
  s = s.replace(/\bhttps?:\/\/(?:[^\s&\u0000]|&amp;)+/gi, (url) => {
    const trail = url.match(/(?:[.,;:!?)\]'*_]|&amp;)+$/);
    const core = trail ? url.slice(0, -trail[0].length) : url;
    return keep(anchor(core, core)) + (trail ? trail[0] : "");
  });
  s = s
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/(^|[^*\w])\*(?=[^\s*])([\s\S]*?[^\s*])\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=[^\s_])([\s\S]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>")
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
  // Slots may nest (a code span inside a link label), so restore until none are left.
  while (s.includes("\u0000")) s = s.replace(/\u0000(\d+)\u0000/g, (_, n) => slots[n]);
  return s;
}

// `url` and `label` are already escaped; `url` was checked against SAFE_URL_RE.
function anchor(url, label) {
  return `<a href="${url}" target="_blank" rel="noopener noreferrer">${label}</a>`;
}

// ---------------------------------------------------------------------------------------------
// Syntax highlighting: one tokenizer, per-language keyword lists and comment styles.

const KEYWORDS = {
  python:
    "and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield match case",
  js:
    "async await break case catch class const continue debugger default delete do else export extends finally for from function if import in instanceof let new of return static super switch this throw try typeof var void while with yield interface type enum implements private public protected readonly",
  c:
    "auto break case char const continue default do double else enum extern float for goto if inline int long register return short signed sizeof static struct switch typedef union unsigned void volatile while class namespace template typename public private protected virtual override new delete using try catch throw bool",
  java:
    "abstract boolean break byte case catch char class continue default do double else enum extends final finally float for if implements import instanceof int interface long new package private protected public return short static super switch synchronized this throw throws try void volatile while var record",
  go: "break case chan const continue default defer else fallthrough for func go goto if import interface map package range return select struct switch type var",
  rust:
    "as async await break const continue crate dyn else enum extern fn for if impl in let loop match mod move mut pub ref return self Self static struct super trait type unsafe use where while",
  bash: "if then else elif fi for while until do done case esac function in return exit export local readonly echo cd set unset source",
  sql:
    "select from where and or not insert into values update set delete create table index view drop alter join left right inner outer full on as group by order having limit offset union all distinct case when then else end primary key foreign references null is in like between exists returning with",
  markup: "",
  generic: "",
};
const LITERALS =
  "true false null undefined None True False nil NaN Infinity self this".split(" ");

const LANGS = {
  python: "python", py: "python",
  javascript: "js", js: "js", jsx: "js", ts: "js", typescript: "js", tsx: "js", mjs: "js", node: "js", json: "js",
  c: "c", h: "c", cpp: "c", "c++": "c", cc: "c", hpp: "c", cs: "c", csharp: "c",
  java: "java", kotlin: "java", kt: "java", scala: "java",
  go: "go", golang: "go", rust: "rust", rs: "rust",
  bash: "bash", sh: "bash", shell: "bash", zsh: "bash", console: "bash", yaml: "bash", yml: "bash", toml: "bash", dockerfile: "bash", makefile: "bash",
  sql: "sql", postgres: "sql", sqlite: "sql",
  html: "markup", xml: "markup", svg: "markup", vue: "markup",
};

const STRINGS = String.raw`"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'`;
const COMMENTS = {
  python: String.raw`#.*`,
  bash: String.raw`#.*`,
  sql: String.raw`--.*|\/\*[\s\S]*?\*\/`,
  markup: String.raw`<!--[\s\S]*?-->`,
  generic: String.raw`(?!)`,
};
const C_COMMENTS = String.raw`\/\/.*|\/\*[\s\S]*?\*\/`;
const EXTRA_STRINGS = {
  python: String.raw`"""[\s\S]*?"""|'''[\s\S]*?'''|`,
  js: "`(?:\\\\.|[^`\\\\])*`|",
  go: "`[^`]*`|",
};

const tokenizers = new Map();

function tokenizer(family) {
  if (!tokenizers.has(family)) {
    const comment = COMMENTS[family] ?? C_COMMENTS;
    const strings = (EXTRA_STRINGS[family] ?? "") + STRINGS;
    const tag = family === "markup" ? String.raw`|(?<tag><\/?[A-Za-z][\w:-]*)` : "";
    const source =
      `(?<comment>${comment})|(?<string>${strings})${tag}` +
      String.raw`|(?<number>\b(?:0x[\da-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\b)` +
      String.raw`|(?<word>[A-Za-z_$][\w$]*)(?<call>\s*\()?`;
    const keywords = new Set(KEYWORDS[family].split(" ").filter(Boolean));
    tokenizers.set(family, { re: new RegExp(source, family === "sql" ? "gi" : "g"), keywords });
  }
  return tokenizers.get(family);
}

const span = (cls, text) => `<span class="tok-${cls}">${escapeHtml(text)}</span>`;

/** Highlight `code` for `lang`; returns escaped HTML with <span class="tok-*"> wrappers. */
export function highlight(code, lang) {
  const family = LANGS[String(lang || "").toLowerCase()] ?? "generic";
  const { re, keywords } = tokenizer(family);
  const isKeyword = (w) => keywords.has(family === "sql" ? w.toLowerCase() : w);
  let out = "";
  let last = 0;
  for (const m of code.matchAll(re)) {
    out += escapeHtml(code.slice(last, m.index));
    last = m.index + m[0].length;
    const g = m.groups;
    if (g.comment !== undefined) out += span("comment", m[0]);
    else if (g.string !== undefined) out += span("string", m[0]);
    else if (g.tag !== undefined) out += span("keyword", m[0]);
    else if (g.number !== undefined) out += span("number", m[0]);
    else if (isKeyword(g.word)) out += span("keyword", g.word) + escapeHtml(g.call ?? "");
    else if (LITERALS.includes(g.word)) out += span("literal", g.word) + escapeHtml(g.call ?? "");
    else if (g.call !== undefined && family !== "generic") out += span("fn", g.word) + escapeHtml(g.call);
    else out += escapeHtml(m[0]);
  }
  return out + escapeHtml(code.slice(last));
}
