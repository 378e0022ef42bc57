// Conversations and settings, kept in this browser's localStorage (nothing is sent to a server).

const CONVERSATIONS_KEY = "chatworks.conversations.v1";
const SETTINGS_KEY = "chatworks.settings.v1";

export const DEFAULT_SETTINGS = Object.freeze({
  model: "",
  temperature: 0.7,
  maxTokens: 512,
  systemPrompt: "",
  collection: "", // documents for new chats ("" = plain chat); each chat keeps its own choice
  tools: [], // MCP servers new chats may use (agent runs); each chat keeps its own choice
});

const NEW_TITLE = "New chat";

function read(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : fallback;
  } catch {
    return fallback; // corrupt or unavailable storage must not break the page
  }
}

function write(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch {
    return false; // quota exceeded or storage disabled: the chat still works for this tab
  }
}

/** Conversations, most recently updated first. */
export function loadConversations() {
  const list = read(CONVERSATIONS_KEY, []);
  if (!Array.isArray(list)) return [];
  return list
    .filter((c) => c && typeof c.id === "string" && Array.isArray(c.messages))
    .sort((a, b) => b.updatedAt - a.updatedAt);
}

export function saveConversations(list) {
  return write(CONVERSATIONS_KEY, list);
}

export function newConversation() {
  const now = Date.now();
  const id = crypto.randomUUID ? crypto.randomUUID() : `${now}-${Math.random().toString(16).slice(2)}`;
  return { id, title: NEW_TITLE, messages: [], createdAt: now, updatedAt: now };
}

/** A sidebar title from the first user message: first line, whitespace collapsed, capped. */
export function titleFrom(text) {
  const line = text.trim().split("\n")[0].replace(/\s+/g, " ");
  if (!line) return NEW_TITLE;
  return line.length > 60 ? `${line.slice(0, 57).trimEnd()}…` : line;
}

export function loadSettings() {
  const saved = read(SETTINGS_KEY, {});
  return { ...DEFAULT_SETTINGS, ...(saved && typeof saved === "object" ? saved : {}) };
}

export function saveSettings(settings) {
  return write(SETTINGS_KEY, settings);
}
