// The chat page: sidebar of conversations, model and settings, the thread and the composer.
// State lives in a few module variables; the DOM is rebuilt from it when a conversation changes,
// and only the streaming message is patched while tokens arrive.
//
// A conversation can be tied to a document collection: its questions then go to /v1/ask and the
// answers carry citations, instead of going to the chat completions endpoint.

import {
  ApiError,
  chatSuggestions,
  collectionSuggestions,
  createCollection,
  listCollections,
  listModels,
  streamAsk,
  streamChat,
  uploadDocument,
} from "./api.js";
import { approvalCard, approvalInput, loadToolServers, runAgent, toolCallsView } from "./agent.js";
import { citationBlock, linkMarkers } from "./citations.js";
import { forgetKey, storedKey } from "./keys.js";
import { el, icon } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import {
  DEFAULT_SETTINGS,
  loadConversations,
  loadSettings,
  newConversation,
  saveConversations,
  saveSettings,
  titleFrom,
} from "./store.js";
import { toast } from "./toasts.js";

const $ = (id) => document.getElementById(id);
const ui = {
  app: $("app"),
  main: document.querySelector(".main"),
  sidebar: $("sidebar"),
  scrim: $("scrim"),
  menuBtn: $("menu-btn"),
  sidebarClose: $("sidebar-close"),
  newChat: $("new-chat"),
  search: $("search"),
  list: $("conversations"),
  modelPicker: $("model-picker"),
  collectionPicker: $("collection-picker"),
  collectionForm: $("collection-form"),
  collectionNote: $("collection-form-note"),
  collectionName: $("collection-name"),
  collectionError: $("collection-error"),
  settingsBtn: $("settings-btn"),
  settings: $("settings"),
  temperature: $("temperature"),
  temperatureValue: $("temperature-value"),
  maxTokens: $("max-tokens"),
  systemPrompt: $("system-prompt"),
  thread: $("thread"),
  empty: $("empty"),
  emptyTitle: document.querySelector("#empty h1"),
  suggestions: $("suggestions"),
  messages: $("messages"),
  jump: $("jump"),
  errorBanner: $("error-banner"),
  errorText: $("error-text"),
  form: $("composer-form"),
  composer: $("composer"),
  send: $("send"),
  stop: $("stop"),
  upload: $("upload"),
  uploadInput: $("upload-input"),
  hint: $("hint"),
  dropOverlay: $("drop-overlay"),
  toolPicker: $("tool-picker"),
  toolPickerLabel: $("tool-picker-label"),
  toolMenu: $("tool-menu"),
  dropTarget: $("drop-target"),
};

// Picker value of the "New collection…" entry: a real name cannot start with "_".
const NEW_COLLECTION = "__new__";
const COLLECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/; // the server's rule, checked early
const CHAT_HINT = "Enter to send · Shift+Enter for a new line · answers can be wrong";

// What the empty chat offers, from the server: prompts the default model answers well (chosen
// on the model probes) and, per collection, questions made from its headings that it answers.
let chatPrompts = [];
const groundedQuestions = new Map(); // collection name -> questions (absent: not asked yet)

let conversations = loadConversations();
let current = null; // the open conversation; null until the first message of a new chat
let settings = loadSettings();
// The one running generation: { controller, conversation, message, view, startedAt, firstTokenAt }.
let generation = null;
let stickToBottom = true; // follow streaming output unless the user scrolled up
let collections = []; // [{ name, documents }] from the server
// The collection a new chat will use: the last one picked, so "New chat" stays in the same mode.
let draftCollection = settings.collection ?? "";
let pendingFiles = null; // files waiting for the "New collection" form to name their collection
let toolServers = []; // registered MCP servers the key may use
// The tool servers a new chat will use; a chat keeps its own (`conversation.tools`).
let draftTools = settings.tools ?? [];

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

function actionButton(name, label, onclick, testid) {
  const attrs = { type: "button", class: "action", "aria-label": label, title: label, "data-testid": testid, onclick };
  return el("button", attrs, icon(name));
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // The Clipboard API needs a secure context; plain http on a LAN address is not one.
    const area = el("textarea", { class: "visually-hidden" });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

/** Copy, then briefly confirm on the button that was pressed (a check mark, or "Copied"). */
async function copyWithFeedback(button, text) {
  await copyText(text);
  const use = button.querySelector("use");
  const before = use ? use.getAttribute("href") : button.textContent;
  if (use) use.setAttribute("href", "#i-check");
  else button.textContent = "Copied";
  button.classList.add("copied");
  setTimeout(() => {
    if (use) use.setAttribute("href", before);
    else button.textContent = before;
    button.classList.remove("copied");
  }, 1500);
}

// ---------------------------------------------------------------------------------------------
// Errors

function showError(message) {
  ui.errorText.textContent = message;
  ui.errorBanner.hidden = false;
}

function hideError() {
  ui.errorBanner.hidden = true;
  ui.errorText.textContent = "";
}

// ---------------------------------------------------------------------------------------------
// Sidebar

function persist() {
  if (!saveConversations(conversations)) showError("Could not save chats: browser storage is full or disabled.");
}

function dayGroup(timestamp) {
  const startOfToday = new Date().setHours(0, 0, 0, 0);
  const day = 86_400_000;
  if (timestamp >= startOfToday) return "Today";
  if (timestamp >= startOfToday - day) return "Yesterday";
  if (timestamp >= startOfToday - 7 * day) return "Previous 7 days";
  return "Older";
}

function matchesSearch(conversation, query) {
  if (!query) return true;
  const q = query.toLowerCase();
  return (
    conversation.title.toLowerCase().includes(q) ||
    conversation.messages.some((m) => m.content.toLowerCase().includes(q))
  );
}

function renderSidebar() {
  const query = ui.search.value.trim();
  const shown = conversations.filter((c) => matchesSearch(c, query));
  const nodes = [];
  let group = null;
  for (const conversation of shown) {
    const label = dayGroup(conversation.updatedAt);
    if (label !== group) {
      group = label;
      nodes.push(el("div", { class: "group-label" }, label));
    }
    nodes.push(conversationItem(conversation));
  }
  if (!shown.length) {
    nodes.push(el("div", { class: "list-empty" }, query ? "No chats match your search." : "No chats yet."));
  }
  ui.list.replaceChildren(...nodes);
}

function conversationItem(conversation) {
  const active = conversation === current;
  const del = el("button", { type: "button", class: "item-delete" }, icon("trash"));
  const arm = (armed) => {
    del.classList.toggle("armed", armed);
    del.title = armed ? "Click again to delete" : "Delete";
    del.setAttribute("aria-label", `${armed ? "Confirm: delete" : "Delete"} chat “${conversation.title}”`);
  };
  arm(false);
  // Two clicks to delete: the first arms the button, so a stray click loses nothing.
  del.addEventListener("click", (event) => {
    event.stopPropagation();
    if (del.classList.contains("armed")) return deleteConversation(conversation);
    arm(true);
    setTimeout(() => arm(false), 3000);
  });
  return el(
    "div",
    { class: `item${active ? " active" : ""}`, "data-testid": "conversation" },
    el(
      "button",
      { type: "button", class: "item-open", "aria-current": active ? "page" : null, onclick: () => openConversation(conversation) },
      conversation.title,
    ),
    del,
  );
}

function openConversation(conversation) {
  current = conversation;
  hideError();
  closeSidebar();
  renderAll();
  scrollToBottom();
  if (!generation) ui.composer.focus();
}

function startNewChat() {
  current = null;
  hideError();
  closeSidebar();
  renderAll();
  ui.composer.focus();
}

function deleteConversation(conversation) {
  if (generation?.conversation === conversation) generation.controller.abort();
  conversations = conversations.filter((c) => c !== conversation);
  persist();
  if (current === conversation) current = null;
  renderAll();
}

function openSidebar() {
  ui.app.classList.add("sidebar-open");
  ui.scrim.hidden = false;
  ui.menuBtn.setAttribute("aria-expanded", "true");
}

function closeSidebar() {
  ui.app.classList.remove("sidebar-open");
  ui.scrim.hidden = true;
  ui.menuBtn.setAttribute("aria-expanded", "false");
}

// ---------------------------------------------------------------------------------------------
// Thread

function renderAll() {
  renderSidebar();
  renderMode();
  renderThread();
  document.title = current ? `${current.title} · chatworks` : "chatworks";
}

function renderThread() {
  const messages = current?.messages ?? [];
  ui.empty.hidden = messages.length > 0;
  if (generation) generation.view = null;
  ui.messages.replaceChildren(...messages.map((message, index) => messageView(message, index, messages)));
}

function messageView(message, index, messages) {
  return message.role === "user" ? userView(message, index) : assistantView(message, index === messages.length - 1);
}

function userView(message, index) {
  const bubble = el("div", { class: "bubble" }, message.content);
  const actions = el(
    "div",
    { class: "msg-actions" },
    generation ? null : actionButton("edit", "Edit message", () => editMessage(index), "edit"),
    actionButton("copy", "Copy message", (e) => copyWithFeedback(e.currentTarget, message.content)),
  );
  const isLast = index === current.messages.length - 1;
  const retry =
    isLast && !generation
      ? el("button", { type: "button", class: "retry", "data-testid": "retry", onclick: regenerate }, icon("refresh"), "Retry")
      : null;
  const attrs = { class: "msg msg-user", "data-testid": "message-user", "aria-label": "You" };
  return el("article", attrs, bubble, actions, retry);
}

function assistantView(message, isLast) {
  const content = el("div", { class: "markdown" });
  const meta = el("div", { class: "msg-meta" });
  const actions = el("div", { class: "msg-actions" });
  const streaming = generation?.message === message;
  // Sources exist only once an answer is complete; a refusal has none by definition.
  const sources = !streaming && message.citations?.length ? citationBlock(message.citations, { onCopy: copyWithFeedback }) : null;
  const calls = toolCallsView(message);
  const card = approvalCard(message, (choice) => answerApproval(current, message, choice), Boolean(generation));
  const body = el("div", { class: "msg-body" }, calls, content, card, sources?.node, meta, actions);
  const classes = ["msg", "msg-assistant", message.collection && "grounded", message.refused && "refused"];
  const view = el(
    "article",
    { class: classes.filter(Boolean).join(" "), "data-testid": "message-assistant", "aria-label": "Assistant" },
    el("div", { class: "avatar", "aria-hidden": "true" }),
    body,
  );
  if (streaming) generation.view = view;
  fillAssistant(view, message, streaming);
  if (sources) linkMarkers(content, message.citations, sources.open);
  if (!streaming) {
    actions.append(actionButton("copy", "Copy answer", (e) => copyWithFeedback(e.currentTarget, message.content)));
    if (isLast && !generation) actions.append(actionButton("refresh", "Regenerate answer", regenerate, "regenerate"));
  }
  return view;
}

// Safe: renderMarkdown escapes all source text and adds only its own markup.
function fillAssistant(view, message, streaming) {
  view.classList.toggle("streaming", streaming);
  view.classList.toggle("waiting", streaming && !message.content);
  view.querySelector(".markdown").innerHTML = renderMarkdown(message.content);
  view.querySelector(".msg-meta").replaceChildren(...metaParts(message));
}

function metaParts(message) {
  const parts = [];
  if (message.collection) {
    const text = message.refused ? `Nothing relevant in ${message.collection}` : message.collection;
    const title = message.refused ? "No passage matched the question" : "Answered from this collection";
    parts.push(el("span", { class: "note source-note", title }, icon("book"), text));
    // An answer that cites nothing was not checked against any passage: say so.
    if (!message.refused && !message.stopped && message.citations && !message.citations.length) {
      parts.push(el("span", { class: "note", title: "The answer names no passage from the documents" }, "No sources cited"));
    }
  }
  if (message.stopped) parts.push(el("span", { class: "note" }, "Stopped"));
  if (message.finishReason === "length") parts.push(el("span", { class: "note" }, "Reached the max-token limit"));
  const s = message.stats;
  if (s) {
    const rate = s.tokensPerSecond ? `${s.tokensPerSecond.toFixed(1)} tok/s` : null;
    const detail =
      `Prompt ${s.promptTokens} tokens · completion ${s.completionTokens} tokens · ` +
      `first token after ${s.ttft.toFixed(2)} s · total ${s.total.toFixed(2)} s`;
    const text = [`${s.completionTokens} tokens`, rate, message.model].filter(Boolean).join(" · ");
    parts.push(el("span", { class: "usage", title: detail, "data-testid": "usage" }, text));
  }
  return parts;
}

// While streaming, re-render at most once per frame: tokens can arrive faster than paints.
let framePending = false;
function scheduleStreamRender() {
  if (framePending) return;
  framePending = true;
  requestAnimationFrame(() => {
    framePending = false;
    if (generation?.view) fillAssistant(generation.view, generation.message, true);
    if (stickToBottom) scrollToBottom();
  });
}

function scrollToBottom() {
  ui.thread.scrollTop = ui.thread.scrollHeight;
  stickToBottom = true;
  ui.jump.hidden = true;
}

function onThreadScroll() {
  const gap = ui.thread.scrollHeight - ui.thread.scrollTop - ui.thread.clientHeight;
  stickToBottom = gap < 48;
  ui.jump.hidden = stickToBottom;
}

// ---------------------------------------------------------------------------------------------
// Sending, streaming, stopping

function setStreaming(on) {
  ui.send.hidden = on;
  ui.stop.hidden = !on;
  ui.thread.setAttribute("aria-busy", on ? "true" : "false");
  updateSendEnabled();
}

function updateSendEnabled() {
  ui.send.disabled = !ui.composer.value.trim() || Boolean(generation);
}

function submitComposer() {
  const text = ui.composer.value.trim();
  if (!text || generation) return;
  ui.composer.value = "";
  autoGrow();
  sendMessage(text);
}

function sendMessage(text) {
  if (!current) {
    current = { ...newConversation(), collection: draftCollection, tools: [...draftTools] };
    conversations.unshift(current);
  }
  if (!current.messages.length) current.title = titleFrom(text);
  current.messages.push({ role: "user", content: text });
  generate(current);
}

function regenerate() {
  if (!current || generation) return;
  const messages = current.messages;
  if (messages.at(-1)?.role === "assistant") messages.pop();
  generate(current);
}

/** What the model sees: the optional system prompt, then the turns that have content. */
function requestMessages(conversation) {
  const turns = conversation.messages
    .filter((m) => m.content && m !== generation?.message)
    .map(({ role, content }) => ({ role, content }));
  const system = settings.systemPrompt.trim();
  return system ? [{ role: "system", content: system }, ...turns] : turns;
}

let pendingApproval = null; // the approval answer the next agent turn sends instead of text

async function generate(conversation) {
  hideError();
  const collection = conversation.collection || null;
  const agent = !collection && conversation.tools?.length > 0;
  const message = collection
    ? { role: "assistant", content: "", collection }
    : { role: "assistant", content: "", model: settings.model, agent };
  conversation.messages.push(message);
  conversation.updatedAt = Date.now();
  generation = {
    controller: new AbortController(),
    conversation,
    message,
    view: null,
    startedAt: performance.now(),
    firstTokenAt: null,
  };
  const run = generation;
  conversations = [conversation, ...conversations.filter((c) => c !== conversation)];
  persist();
  renderAll();
  setStreaming(true);
  scrollToBottom();
  const onDelta = (text) => {
    run.firstTokenAt ??= performance.now();
    message.content += text;
    scheduleStreamRender();
  };
  try {
    if (collection) await ask(conversation, run, onDelta);
    else if (agent) await act(conversation, run, onDelta, pendingApproval);
    else await chat(conversation, run, onDelta);
  } catch (err) {
    if (err.name === "AbortError") {
      message.stopped = true;
    } else {
      showError(err instanceof ApiError ? err.message : `Something went wrong: ${err.message}`);
    }
  } finally {
    finishGeneration(run);
  }
}

async function chat(conversation, run, onDelta) {
  const result = await streamChat({
    model: settings.model,
    messages: requestMessages(conversation),
    temperature: settings.temperature,
    maxTokens: settings.maxTokens,
    sessionId: conversation.id,
    signal: run.controller.signal,
    onDelta,
  });
  run.message.finishReason = result.finishReason;
  run.message.stats = statsFrom(result.usage, run);
}

/** An agent turn (/v1/responses): the new user text, or the answer to a waiting approval. */
async function act(conversation, run, onDelta, approvalAnswer) {
  pendingApproval = null;
  const question = conversation.messages.findLast((m) => m.role === "user")?.content ?? "";
  const usage = await runAgent({
    conversation,
    message: run.message,
    input: approvalAnswer ?? question,
    model: settings.model,
    maxTokens: settings.maxTokens,
    instructions: settings.systemPrompt.trim() || undefined,
    signal: run.controller.signal,
    onDelta,
    onChange: () => {
      renderThread(); // a tool call or an approval card: new blocks, not just text
      if (stickToBottom) scrollToBottom();
    },
  });
  run.message.stats = statsFrom(usage, run);
}

/** A person's answer to a waiting tool call: a new agent turn continues the run with it. */
function answerApproval(conversation, message, choice) {
  if (generation || !message.approval || message.approval.answer) return;
  message.approval.answer = choice;
  pendingApproval = approvalInput(message.approval, choice);
  generate(conversation);
}

/** A grounded answer: the question alone goes to /v1/ask, since answers come from the documents. */
async function ask(conversation, run, onDelta) {
  const { message } = run;
  const question = conversation.messages.findLast((m) => m.role === "user")?.content ?? "";
  const maxTokens = settings.maxTokens;
  const result = await streamAsk({
    question,
    collection: message.collection,
    temperature: settings.temperature,
    maxTokens,
    signal: run.controller.signal,
    onDelta,
  });
  message.content = result.answer; // cleaned by the server: markers that cite nothing are gone
  message.citations = result.citations ?? [];
  message.refused = Boolean(result.refused);
  const completion = result.usage?.completion_tokens ?? 0;
  if (completion) message.stats = statsFrom(result.usage, run);
  // /v1/ask reports no finish reason; an answer that used its whole budget was cut off.
  if (completion >= maxTokens) message.finishReason = "length";
}

function statsFrom(usage, run) {
  if (!usage) return null;
  const end = performance.now();
  const firstToken = run.firstTokenAt ?? end;
  return {
    promptTokens: usage.prompt_tokens,
    completionTokens: usage.completion_tokens,
    // Decode speed: the tokens after the first one, over the time since the first one arrived.
    tokensPerSecond: end > firstToken ? (usage.completion_tokens - 1) / ((end - firstToken) / 1000) : 0,
    ttft: (firstToken - run.startedAt) / 1000,
    total: (end - run.startedAt) / 1000,
  };
}

function finishGeneration(run) {
  const { conversation, message } = run;
  // An answer that never produced text is noise in the history; the user can Retry instead.
  const acted = message.toolCalls?.length || message.approval;
  if (!message.content && !acted) conversation.messages = conversation.messages.filter((m) => m !== message);
  generation = null;
  conversation.updatedAt = Date.now();
  persist();
  setStreaming(false);
  if (conversation === current) {
    renderThread();
    if (stickToBottom) scrollToBottom();
  }
  renderSidebar();
  ui.composer.focus({ preventScroll: true });
}

function stopGeneration() {
  generation?.controller.abort();
}

// ---------------------------------------------------------------------------------------------
// Editing a user message: replace it, drop everything after it, and resend.

function editMessage(index) {
  if (generation) return;
  const view = ui.messages.children[index];
  const original = current.messages[index].content;
  const area = el("textarea", { class: "edit-area", "aria-label": "Edit message", "data-testid": "edit-area" });
  area.value = original;
  const save = () => {
    const text = area.value.trim();
    if (!text) return;
    current.messages = current.messages.slice(0, index);
    sendMessage(text); // retitles the chat when the first message was edited
  };
  const editor = el(
    "div",
    { class: "editor" },
    area,
    el(
      "div",
      { class: "editor-actions" },
      el("button", { type: "button", class: "text-btn", onclick: renderThread }, "Cancel"),
      el("button", { type: "button", class: "primary-btn", "data-testid": "edit-send", onclick: save }, "Send"),
    ),
  );
  area.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      save();
    } else if (e.key === "Escape") {
      renderThread();
    }
  });
  view.replaceChildren(editor);
  view.classList.add("editing");
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);
}

// ---------------------------------------------------------------------------------------------
// Composer

function autoGrow() {
  ui.composer.style.height = "auto";
  ui.composer.style.height = `${Math.min(ui.composer.scrollHeight, 240)}px`;
  updateSendEnabled();
}

// On touch keyboards Enter inserts a newline, as in other chat apps; the button sends.
const enterSends = () => !window.matchMedia("(pointer: coarse)").matches;

function onComposerKey(event) {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && enterSends()) {
    event.preventDefault();
    submitComposer();
  }
}

// ---------------------------------------------------------------------------------------------
// Models and settings

async function loadModels() {
  try {
    const models = await listModels();
    if (!models.length) throw new ApiError("The server has no models loaded.");
    ui.modelPicker.replaceChildren(...models.map((id) => el("option", { value: id }, id)));
    if (!models.includes(settings.model)) settings.model = models[0];
    ui.modelPicker.value = settings.model;
    saveSettings(settings);
  } catch (err) {
    ui.modelPicker.replaceChildren(el("option", { value: "" }, "No model available"));
    showError(`Could not load models: ${err.message}`);
  }
}

function showSettings() {
  ui.temperature.value = settings.temperature;
  ui.temperatureValue.textContent = Number(settings.temperature).toFixed(2);
  ui.maxTokens.value = settings.maxTokens;
  ui.systemPrompt.value = settings.systemPrompt;
}

// The server validates ranges (and answers with a clear error), so values are not clamped here.
function readSettings() {
  const maxTokens = parseInt(ui.maxTokens.value, 10);
  settings.temperature = Number(ui.temperature.value);
  settings.maxTokens = Number.isFinite(maxTokens) ? maxTokens : DEFAULT_SETTINGS.maxTokens;
  settings.systemPrompt = ui.systemPrompt.value;
  ui.temperatureValue.textContent = settings.temperature.toFixed(2);
  saveSettings(settings);
}

function toggleSettings(open = ui.settings.hidden) {
  ui.settings.hidden = !open;
  ui.settingsBtn.setAttribute("aria-expanded", String(open));
  $("key-field").hidden = !storedKey();
  if (open) ui.temperature.focus();
}

/** Forget the stored API key; reloading models and collections asks for another. */
function forgetApiKey() {
  forgetKey();
  toggleSettings(false);
  loadModels();
  loadChatSuggestions();
  refreshCollections();
  refreshToolServers();
}

function resetSettings() {
  settings = { ...DEFAULT_SETTINGS, model: settings.model, collection: settings.collection };
  saveSettings(settings);
  showSettings();
}

// ---------------------------------------------------------------------------------------------
// Documents: the collection picker, new collections, uploads and drag-and-drop

/** The collection questions go to: the open chat's own choice, or the one for a new chat. */
function activeCollection() {
  return current ? current.collection ?? "" : draftCollection;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function renderCollectionPicker() {
  const active = activeCollection();
  const names = collections.map((c) => c.name);
  const options = collections.map((c) => el("option", { value: c.name }, `${c.name} (${c.documents})`));
  // A chat can outlive its collection; keep its choice visible so the 404 that follows makes sense.
  if (active && !names.includes(active)) options.push(el("option", { value: active }, `${active} (not found)`));
  ui.collectionPicker.replaceChildren(
    el("option", { value: "" }, "No documents"),
    options.length ? el("optgroup", { label: "Collections" }, ...options) : null,
    el("option", { value: NEW_COLLECTION, "data-testid": "new-collection" }, "+ New collection…"),
  );
  ui.collectionPicker.value = active;
}

/** Everything that says which mode the composer is in: picker, placeholder, hint, empty state. */
/** The tool servers questions may use: the open chat's own, or the ones for a new chat. */
function activeTools() {
  return current ? current.tools ?? [] : draftTools;
}

function renderToolPicker() {
  ui.toolPicker.hidden = toolServers.length === 0;
  const active = activeTools();
  ui.toolPickerLabel.textContent = active.length ? `Tools (${active.length})` : "Tools";
  ui.toolPicker.classList.toggle("active", active.length > 0);
  ui.toolMenu.replaceChildren(
    el("p", { class: "popover-note" }, "The assistant may use these tools; anything that changes something asks you first."),
    ...toolServers.map((label) => {
      const box = el("input", { type: "checkbox", value: label, "data-testid": `tool-${label}`, checked: active.includes(label) });
      box.addEventListener("change", () => toggleTool(label, box.checked));
      return el("label", { class: "tool-option" }, box, label);
    }),
  );
}

function toggleTool(label, on) {
  const chosen = new Set(activeTools());
  if (on) chosen.add(label);
  else chosen.delete(label);
  draftTools = [...chosen];
  settings.tools = draftTools;
  saveSettings(settings);
  if (current) {
    current.tools = draftTools;
    persist();
  }
  renderToolPicker();
}

async function refreshToolServers() {
  toolServers = await loadToolServers();
  renderToolPicker();
}

function renderMode() {
  const name = activeCollection();
  renderCollectionPicker();
  renderToolPicker();
  ui.collectionPicker.parentElement.classList.toggle("active", Boolean(name));
  ui.form.classList.toggle("grounded", Boolean(name));
  ui.composer.placeholder = name ? `Ask ${name}…` : "Message chatworks";
  ui.hint.textContent = name ? `Answers come only from ${name}, with their sources · Enter to send` : CHAT_HINT;
  ui.emptyTitle.textContent = name ? `Ask ${name}` : "How can I help?";
  renderSuggestions();
  ui.upload.title = name ? `Add documents to ${name}` : "Add documents (txt, md, html, pdf, docx)";
  ui.dropTarget.textContent = name ? `to ${name}` : "to a new collection";
}

async function refreshCollections() {
  groundedQuestions.clear(); // documents may have changed: ask for fresh questions
  try {
    collections = await listCollections();
  } catch (err) {
    showError(`Could not load document collections: ${err.message}`);
  }
  renderMode();
}

function selectCollection(name) {
  if (name === NEW_COLLECTION) {
    ui.collectionPicker.value = activeCollection(); // stays put if the form is cancelled
    openCollectionForm();
    return;
  }
  draftCollection = name;
  settings.collection = name;
  saveSettings(settings);
  if (current) {
    current.collection = name;
    persist();
  }
  renderMode();
  ui.composer.focus();
}

function openCollectionForm(note = "A collection holds documents that answers can cite.") {
  toggleSettings(false);
  ui.collectionNote.textContent = note;
  ui.collectionName.value = "";
  ui.collectionError.hidden = true;
  ui.collectionForm.hidden = false;
  ui.collectionName.focus();
}

function closeCollectionForm() {
  ui.collectionForm.hidden = true;
  pendingFiles = null;
}

function collectionFormError(message) {
  ui.collectionError.textContent = message;
  ui.collectionError.hidden = false;
  ui.collectionName.focus();
}

async function submitCollectionForm(event) {
  event.preventDefault();
  const name = ui.collectionName.value.trim();
  if (!COLLECTION_NAME.test(name)) {
    return collectionFormError("Use 1–64 letters, digits, “.”, “_” or “-”, starting with a letter or digit.");
  }
  try {
    await createCollection(name);
  } catch (err) {
    return collectionFormError(err.message);
  }
  const files = pendingFiles;
  closeCollectionForm();
  collections = [...collections.filter((c) => c.name !== name), { name, documents: 0 }];
  selectCollection(name);
  if (files) uploadFiles(name, files);
  refreshCollections();
}

/** Files from the picker or a drop: into the active collection, or name one for them first. */
function addFiles(files) {
  if (!files.length) return;
  const name = activeCollection();
  if (name) return uploadFiles(name, files);
  openCollectionForm(`Name a collection for ${plural(files.length, "file")}. Answers in this chat will then cite them.`);
  pendingFiles = files;
}

async function uploadFiles(collection, files) {
  const jobs = files.map((file) => ({ file, card: toast({ title: file.name, status: "Waiting…" }) }));
  // One at a time: indexing is CPU-bound on the server, so parallel uploads would not be faster.
  for (const job of jobs) await uploadOne(collection, job);
  refreshCollections();
}

function ingestStatus(result) {
  const chunks = plural(result.chunks, "chunk");
  if (result.status === "unchanged") return `Unchanged, already indexed (${chunks})`;
  return `${result.status === "updated" ? "Updated" : "Added"}, ${chunks}`;
}

async function uploadOne(collection, { file, card }) {
  let slow = null;
  card.update({ status: "Uploading…", progress: 0 });
  const onProgress = (fraction) => {
    if (fraction !== null) return card.update({ status: `Uploading ${Math.round(fraction * 100)}%`, progress: fraction });
    card.update({ status: `Indexing into ${collection}…`, progress: null });
    slow = setTimeout(() => card.update({ status: "Indexing… the first upload also loads the embedding model" }), 4000);
  };
  try {
    card.update({ kind: "ok", status: ingestStatus(await uploadDocument(collection, file, { onProgress })) });
  } catch (err) {
    card.update({ kind: "error", status: err.message });
  } finally {
    clearTimeout(slow);
  }
}

function bindDropZone() {
  let depth = 0; // dragenter/dragleave fire for every child crossed; count to know when we left
  const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes("Files");
  const show = (on) => {
    ui.dropOverlay.hidden = !on;
  };
  ui.main.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth += 1;
    show(true);
  });
  ui.main.addEventListener("dragleave", (e) => {
    if (!hasFiles(e)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) show(false);
  });
  ui.main.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    show(false);
    addFiles([...e.dataTransfer.files]);
  });
  // Anywhere on the page, a missed drop must not navigate away to the file.
  document.addEventListener("dragover", (e) => hasFiles(e) && e.preventDefault());
  document.addEventListener("drop", (e) => hasFiles(e) && e.preventDefault());
}

// ---------------------------------------------------------------------------------------------
// Wiring

function bindEvents() {
  ui.form.addEventListener("submit", (e) => {
    e.preventDefault();
    submitComposer();
  });
  ui.composer.addEventListener("keydown", onComposerKey);
  ui.composer.addEventListener("input", autoGrow);
  ui.stop.addEventListener("click", stopGeneration);
  ui.newChat.addEventListener("click", startNewChat);
  ui.search.addEventListener("input", renderSidebar);
  ui.menuBtn.addEventListener("click", openSidebar);
  ui.sidebarClose.addEventListener("click", closeSidebar);
  ui.scrim.addEventListener("click", closeSidebar);
  ui.thread.addEventListener("scroll", onThreadScroll, { passive: true });
  ui.jump.addEventListener("click", scrollToBottom);
  $("error-close").addEventListener("click", hideError);

  ui.collectionPicker.addEventListener("change", () => selectCollection(ui.collectionPicker.value));
  ui.collectionForm.addEventListener("submit", submitCollectionForm);
  $("collection-cancel").addEventListener("click", closeCollectionForm);
  ui.upload.addEventListener("click", () => ui.uploadInput.click());
  ui.uploadInput.addEventListener("change", () => {
    addFiles([...ui.uploadInput.files]);
    ui.uploadInput.value = ""; // so choosing the same file again fires "change" again
  });
  bindDropZone();

  ui.modelPicker.addEventListener("change", () => {
    settings.model = ui.modelPicker.value;
    saveSettings(settings);
  });
  ui.settingsBtn.addEventListener("click", () => toggleSettings());
  ui.settings.addEventListener("input", readSettings);
  ui.settings.addEventListener("submit", (e) => e.preventDefault());
  $("settings-done").addEventListener("click", () => toggleSettings(false));
  $("key-forget").addEventListener("click", forgetApiKey);
  $("settings-reset").addEventListener("click", resetSettings);
  document.addEventListener("click", (e) => {
    if (!ui.settings.hidden && !e.target.closest(".settings-wrap")) toggleSettings(false);
    if (!ui.collectionForm.hidden && !e.target.closest(".docs-wrap, .attach-btn")) closeCollectionForm();
  });

  // Copy buttons inside rendered code blocks (their markup comes from markdown.js).
  ui.messages.addEventListener("click", (e) => {
    const button = e.target.closest("[data-copy-code]");
    if (button) copyWithFeedback(button, button.closest(".code-block").querySelector("code").textContent);
  });

  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      if (!ui.settings.hidden) toggleSettings(false);
      else if (!ui.collectionForm.hidden) closeCollectionForm();
      else if (ui.app.classList.contains("sidebar-open")) closeSidebar();
      else stopGeneration();
    } else if ((e.ctrlKey || e.metaKey) && e.shiftKey && e.key.toLowerCase() === "o") {
      e.preventDefault();
      startNewChat();
    }
  });
}

/**
 * The empty state's chips. In a collection: questions it answers. Without one: the first
 * collection's questions (a click picks the collection, then asks) and prompts for the model.
 */
function renderSuggestions() {
  const active = activeCollection();
  const grounded = active || collections[0]?.name || "";
  const questions = grounded ? groundedQuestions.get(grounded) : [];
  if (questions === undefined) loadCollectionSuggestions(grounded);
  const chip = (text, onclick, testid) =>
    el("button", { type: "button", class: "suggestion", "data-testid": testid, onclick: () => !generation && onclick() }, text);
  const group = (caption, chips) =>
    chips.length ? el("div", { class: "suggestion-group" }, el("p", { class: "suggestion-caption" }, caption), el("div", { class: "suggestion-chips" }, ...chips)) : null;
  const askChips = (questions ?? []).map((q) =>
    chip(q, () => { if (!active) selectCollection(grounded); sendMessage(q); }, "suggestion-grounded"),
  );
  const chatChips = active ? [] : chatPrompts.map((p) => chip(p, () => sendMessage(p), "suggestion-chat"));
  ui.suggestions.replaceChildren(
    ...[group(`Ask ${grounded}, with sources`, askChips), group("Or chat with the model", chatChips)].filter(Boolean),
  );
}

async function loadCollectionSuggestions(name) {
  groundedQuestions.set(name, null); // asked: render nothing for it until the answer arrives
  try {
    groundedQuestions.set(name, await collectionSuggestions(name));
  } catch {
    groundedQuestions.set(name, []); // suggestions are a nicety: no error banner for them
  }
  renderSuggestions();
}

async function loadChatSuggestions() {
  try {
    chatPrompts = await chatSuggestions();
  } catch {
    chatPrompts = [];
  }
  renderSuggestions();
}

function init() {
  bindEvents();
  showSettings();
  renderAll();
  autoGrow();
  ui.composer.focus();
  loadModels();
  loadChatSuggestions();
  refreshCollections();
  refreshToolServers();
}

init();
