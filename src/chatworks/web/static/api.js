// Client for the server API: model list and streamed chat completions (SSE, OpenAI-compatible),
// plus document collections, uploads and grounded answers with citations (`/v1/ask`).
// Every call carries the API key if one is stored; a 401 asks for a key and retries.

import { askForKey, authHeaders } from "./keys.js";

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/** Turn an error response into an ApiError carrying the server's own message. */
async function errorFrom(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    const detail = body?.error?.message ?? body?.detail;
    if (typeof detail === "string" && detail) message = detail;
  } catch {
    // not JSON (e.g. a proxy's HTML page): keep the status line
  }
  const retry = response.headers.get("Retry-After");
  if (retry && !/retry/i.test(message)) message += ` — retry in ${retry} s`;
  return new ApiError(message, response.status);
}

async function request(url, init = {}) {
  for (;;) {
    let response;
    try {
      response = await fetch(url, { ...init, headers: { ...init.headers, ...authHeaders() } });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError("Cannot reach the server. Is chatworks running?");
    }
    if (response.ok) return response;
    const error = await errorFrom(response);
    // The server requires a key (or refused this one): ask, then send the request again.
    if (response.status !== 401 || !(await askForKey(error.message))) throw error;
  }
}

export async function listModels() {
  const response = await request("/v1/models");
  const body = await response.json();
  return (body.data ?? []).map((m) => m.id);
}

/**
 * Headers of a streamed POST. `X-Session-Id` names the conversation: behind several replicas the
 * load balancer sends every turn of it to the same one, whose prefix cache holds its history
 * (docs/operations/deploy.md, "Replicas behind HAProxy"). One server ignores it.
 */
function streamHeaders(sessionId) {
  const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
  if (sessionId) headers["X-Session-Id"] = sessionId;
  return headers;
}

/**
 * Stream a chat completion. Calls onDelta(text) for each piece of content as it arrives and
 * resolves to { finishReason, usage }. Aborting `signal` closes the connection, which makes the
 * server cancel the generation; the returned promise then rejects with an AbortError.
 */
export async function streamChat({ model, messages, temperature, maxTokens, sessionId, signal, onDelta }) {
  const response = await request("/v1/chat/completions", {
    method: "POST",
    headers: streamHeaders(sessionId),
    body: JSON.stringify({
      model,
      messages,
      stream: true,
      temperature,
      max_tokens: maxTokens,
      stream_options: { include_usage: true },
    }),
    signal,
  });
  const result = { finishReason: null, usage: null };
  for await (const data of sseData(response.body)) {
    if (data === "[DONE]") break;
    const chunk = JSON.parse(data);
    if (chunk.error) throw new ApiError(chunk.error.message ?? "Generation failed");
    const choice = chunk.choices?.[0];
    if (choice?.delta?.content) onDelta(choice.delta.content);
    if (choice?.finish_reason) result.finishReason = choice.finish_reason;
    if (chunk.usage) result.usage = chunk.usage;
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Agents: registered MCP servers, and agent runs over the Responses API

export async function listToolServers() {
  const response = await request("/v1/mcp/servers");
  return ((await response.json()).data ?? []).map((s) => s.label);
}

/**
 * One agent run (POST /v1/responses, streamed). Calls onEvent(event) for each of OpenAI's stream
 * events and resolves to the final response object (completed or incomplete).
 */
export async function streamResponse({ model, input, previousResponseId, tools, instructions, maxTokens, sessionId, signal, onEvent }) {
  const body = { model, input, tools, stream: true, max_output_tokens: maxTokens };
  if (previousResponseId) body.previous_response_id = previousResponseId;
  if (instructions) body.instructions = instructions;
  const response = await request("/v1/responses", {
    method: "POST",
    headers: streamHeaders(sessionId),
    body: JSON.stringify(body),
    signal,
  });
  let final = null;
  for await (const data of sseData(response.body)) {
    if (data === "[DONE]") break;
    const event = JSON.parse(data);
    if (event.type === "error") throw new ApiError(event.message ?? "The run failed");
    if (event.type === "response.completed" || event.type === "response.incomplete") final = event.response;
    onEvent(event);
  }
  if (!final) throw new ApiError("The run ended before it finished.");
  return final;
}

// Suggestions for the empty chat: prompts the model handles, questions a collection answers

export async function chatSuggestions() {
  const response = await request("/v1/suggestions");
  return ((await response.json()).data ?? []).map((s) => s.prompt);
}

export async function collectionSuggestions(name) {
  const response = await request(`/v1/collections/${encodeURIComponent(name)}/suggestions`);
  return ((await response.json()).data ?? []).map((s) => s.question);
}

// Documents: collections, uploads, grounded answers

export async function listCollections() {
  const response = await request("/v1/collections");
  const body = await response.json();
  return body.data ?? [];
}

export async function createCollection(name) {
  const response = await request("/v1/collections", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
  });
  return response.json();
}

/**
 * Upload one file into a collection. XMLHttpRequest rather than fetch because only it reports
 * upload progress: onProgress(fraction) while the bytes go up, onProgress(null) once the server
 * has them and is indexing. Resolves to { document_id, source, status, chunks }.
 */
export function uploadDocument(collection, file, { onProgress = () => {} } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/collections/${encodeURIComponent(collection)}/documents`);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.responseType = "text";
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.upload.onload = () => onProgress(null);
    xhr.onerror = () => reject(new ApiError("Cannot reach the server. Is chatworks running?"));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // not JSON: handled below with the status line
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) return resolve(body);
      const detail = body?.error?.message ?? body?.detail;
      const message = typeof detail === "string" && detail ? detail : `${xhr.status} ${xhr.statusText}`.trim();
      if (xhr.status === 401) {
        askForKey(message).then((saved) =>
          saved ? uploadDocument(collection, file, { onProgress }).then(resolve, reject) : reject(new ApiError(message, 401)),
        );
        return;
      }
      reject(new ApiError(message, xhr.status));
    };
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/**
 * Ask a question of a collection, streamed. Calls onDelta(text) while the answer is written and
 * resolves to the final event: { answer, citations, refused, usage }. The final answer replaces
 * the streamed text, since the server cleans citation markers that point at no source.
 */
export async function streamAsk({ question, collection, temperature, maxTokens, signal, onDelta }) {
  const response = await request("/v1/ask", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ question, collection, stream: true, temperature, max_tokens: maxTokens }),
    signal,
  });
  let final = null;
  for await (const data of sseData(response.body)) {
    if (data === "[DONE]") break;
    const event = JSON.parse(data);
    if (event.error) throw new ApiError(event.error.message ?? "Answering failed");
    if (typeof event.delta === "string") onDelta(event.delta);
    else if (typeof event.answer === "string") final = event;
  }
  if (!final) throw new ApiError("The answer ended before its sources arrived.");
  return final;
}

/** Yield the `data:` payload of each Server-Sent Event in a byte stream. */
async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data) yield data;
      }
    }
  } finally {
    // Closes the connection if we stopped early, so the server stops generating.
    reader.cancel().catch(() => {});
  }
}
