// Sources under a grounded answer: one chip per citation, a panel with the quoted passage, and
// the answer's own [n] markers turned into links to the same panel. Everything the server sent
// (titles, paths, quotes) goes into the DOM as text.

import { el, icon } from "./dom.js";

/** The last part of a path or URL: "/srv/docs/README.md" -> "README.md". */
export function fileName(source) {
  const parts = String(source ?? "").split(/[\\/]/).filter(Boolean);
  return parts.at(-1) ?? "";
}

/** The innermost heading of a "Handbook > Access" section path. */
function sectionLeaf(section) {
  return section ? section.split(">").at(-1).trim() : "";
}

/** "[1] README.md · Configuration · p. 3": enough to tell sources apart at a glance. */
export function citationLabel(c) {
  const name = fileName(c.source) || c.title || "document";
  const parts = [name, sectionLeaf(c.section), c.page ? `p. ${c.page}` : ""].filter(Boolean);
  return `[${c.index}] ${parts.join(" · ")}`;
}

function metaRow(term, value) {
  if (value === null || value === undefined || value === "") return null;
  return el("div", { class: "cp-row" }, el("dt", {}, term), el("dd", {}, String(value)));
}

function panel(c, onClose, onCopy) {
  const section = c.section ? c.section.split(">").map((s) => s.trim()).join(" › ") : null;
  const copy = el(
    "button",
    { type: "button", class: "icon-btn cp-btn", "aria-label": "Copy quoted passage", title: "Copy passage", onclick: (e) => onCopy(e.currentTarget, c.quote) },
    icon("copy"),
  );
  return el(
    "div",
    { class: "citation-panel", "data-testid": "citation-panel", role: "region", "aria-label": `Source ${c.index}` },
    el(
      "div",
      { class: "cp-head" },
      el("span", { class: "cp-index", "aria-hidden": "true" }, String(c.index)),
      el(
        "div",
        { class: "cp-title" },
        el("strong", {}, c.title || fileName(c.source) || "Untitled document"),
        el("span", { class: "cp-source", title: c.source }, c.source),
      ),
      copy,
      el("button", { type: "button", class: "icon-btn cp-btn", "aria-label": "Close source", title: "Close", onclick: onClose }, icon("x")),
    ),
    el(
      "dl",
      { class: "cp-meta" },
      metaRow("Section", section),
      metaRow("Page", c.page),
      metaRow("Characters", `${c.start.toLocaleString()}–${c.end.toLocaleString()}`),
    ),
    el("blockquote", { class: "cp-quote", "data-testid": "citation-quote" }, c.quote),
  );
}

/**
 * The "Sources" block for an answer. Returns { node, open(index) }: open toggles the panel of
 * one citation (one panel at a time), so the chips and the inline [n] markers share it.
 */
export function citationBlock(citations, { onCopy }) {
  let openIndex = null;
  let openPanel = null;
  const chips = new Map();
  const close = () => open(openIndex);
  function open(index) {
    const same = index === openIndex;
    openPanel?.remove();
    chips.get(openIndex)?.setAttribute("aria-expanded", "false");
    openIndex = openPanel = null;
    if (same) return;
    const c = citations.find((x) => x.index === index);
    if (!c) return;
    openIndex = index;
    openPanel = panel(c, close, onCopy);
    chips.get(index)?.setAttribute("aria-expanded", "true");
    node.append(openPanel);
    openPanel.scrollIntoView({ block: "nearest" });
  }
  for (const c of citations) {
    const chip = el(
      "button",
      { type: "button", class: "citation", "data-testid": "citation", "aria-expanded": "false", title: c.source, onclick: () => open(c.index) },
      icon("file"),
      el("span", { class: "citation-label" }, citationLabel(c)),
    );
    chips.set(c.index, chip);
  }
  const node = el(
    "div",
    { class: "citations" },
    el("div", { class: "citations-head" }, "Sources"),
    el("div", { class: "citation-chips" }, ...chips.values()),
  );
  return { node, open };
}

/**
 * Turn the answer's "[2]" markers into small buttons that open source 2. Walks the text nodes the
 * Markdown renderer produced, leaving code and links alone.
 */
export function linkMarkers(container, citations, open) {
  const known = new Set(citations.map((c) => c.index));
  const walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT, {
    acceptNode: (n) => (n.parentElement.closest("pre, code, a") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  const texts = [];
  while (walker.nextNode()) if (/\[\d+\]/.test(walker.currentNode.data)) texts.push(walker.currentNode);
  for (const text of texts) {
    const pieces = text.data.split(/\[(\d+)\]/); // odd positions hold the numbers
    const nodes = pieces.map((piece, i) => {
      const index = Number(piece);
      if (i % 2 === 0 || !known.has(index)) return i % 2 === 0 ? piece : `[${piece}]`;
      const label = `Show source ${index}`;
      return el("button", { type: "button", class: "cite-ref", "aria-label": label, title: label, onclick: () => open(index) }, String(index));
    });
    text.replaceWith(...nodes);
  }
}
