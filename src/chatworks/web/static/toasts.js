// Small status cards in the corner, one per upload: created once, then updated as the work goes
// on. Successes fade away by themselves; errors stay until dismissed, since they need reading.

import { el, icon } from "./dom.js";

const SUCCESS_MS = 5000;

/** Show a toast. kind: "busy" | "ok" | "error". Returns { update, close }. */
export function toast({ title, status = "", kind = "busy" }) {
  const statusNode = el("div", { class: "toast-status", "data-testid": "toast-status" });
  const bar = el("div", { class: "toast-bar", "aria-hidden": "true" }, el("span"));
  const close = () => node.remove();
  const node = el(
    "div",
    { class: "toast", "data-testid": "toast", role: "status" },
    el("span", { class: "toast-icon", "aria-hidden": "true" }),
    el("div", { class: "toast-body" }, el("div", { class: "toast-title", title }, title), statusNode, bar),
    el("button", { type: "button", class: "icon-btn toast-close", "aria-label": "Dismiss", title: "Dismiss", onclick: close }, icon("x")),
  );
  let timer = null;
  /** progress: 0..1 for a known fraction, null for "working, length unknown". */
  function update({ status: text, kind: next, progress } = {}) {
    if (text !== undefined) statusNode.textContent = text;
    if (next) node.dataset.kind = next;
    bar.hidden = node.dataset.kind !== "busy";
    bar.classList.toggle("indeterminate", progress === null);
    if (typeof progress === "number") bar.firstChild.style.width = `${Math.round(progress * 100)}%`;
    clearTimeout(timer);
    if (node.dataset.kind === "ok") timer = setTimeout(close, SUCCESS_MS);
  }
  update({ status, kind, progress: 0 });
  document.getElementById("toasts").append(node);
  return { update, close };
}
