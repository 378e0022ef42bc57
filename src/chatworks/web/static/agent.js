// Agents in the chat: the tool picker's servers, runs over the Responses API (/v1/responses),
// each tool call shown collapsed with its arguments and result, and the approval card
// (Allow once / Always in this conversation / Deny) when a run waits for a person.

import { listToolServers, streamResponse } from "./api.js";
import { el, icon } from "./dom.js";

/** The registered MCP servers this key may use ([] when there are none, or no tools scope). */
export async function loadToolServers() {
  try {
    return await listToolServers();
  } catch {
    return [];
  }
}

/** The response the conversation continues: the last one an agent turn of it produced. */
export function lastResponseId(conversation) {
  return conversation.messages.findLast((m) => m.responseId)?.responseId ?? null;
}

/**
 * One agent turn into `message`: `input` is the user's text, or an approval answer. The server
 * keeps the conversation (previous_response_id), so only what is new is sent.
 */
export async function runAgent({ conversation, message, input, model, maxTokens, instructions, signal, onDelta, onChange }) {
  message.previousResponseId = lastResponseId(conversation);
  message.toolCalls = [];
  const final = await streamResponse({
    model,
    input,
    previousResponseId: message.previousResponseId,
    tools: conversation.tools.map((label) => ({ type: "mcp", server_label: label })),
    instructions,
    maxTokens,
    sessionId: conversation.id,
    signal,
    onEvent: (event) => {
      if (event.type === "response.output_text.delta") onDelta(event.delta);
      if (event.type !== "response.output_item.done") return;
      const item = event.item;
      if (item.type === "mcp_call") {
        message.toolCalls.push({ server: item.server_label, name: item.name, arguments: item.arguments, output: item.output, error: item.error });
        onChange();
      } else if (item.type === "mcp_approval_request") {
        message.approval = { id: item.id, server: item.server_label, name: item.name, arguments: item.arguments, answer: null };
        onChange();
      }
    },
  });
  message.responseId = final.id;
  if (final.status === "incomplete") message.finishReason = final.incomplete_details?.reason ?? "length";
  return final.usage ? { prompt_tokens: final.usage.input_tokens, completion_tokens: final.usage.output_tokens } : null;
}

function pretty(json) {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    return String(json ?? "");
  }
}

/** Each tool call, collapsed: server · tool and how it ended; open for arguments and result. */
export function toolCallsView(message) {
  if (!message.toolCalls?.length) return null;
  return el(
    "div",
    { class: "tool-calls" },
    ...message.toolCalls.map((call) => {
      const failed = Boolean(call.error);
      return el(
        "details",
        { class: `tool-call${failed ? " failed" : ""}`, "data-testid": "tool-call" },
        el("summary", {}, icon(failed ? "alert" : "check"), `${call.server} · ${call.name}`, el("span", { class: "tool-status" }, failed ? call.error : "done")),
        el("div", { class: "tool-label" }, "Arguments"),
        el("pre", { class: "tool-json" }, pretty(call.arguments)),
        el("div", { class: "tool-label" }, failed ? "Error" : "Result"),
        el("pre", { class: "tool-json" }, failed ? call.error : call.output ?? ""),
      );
    }),
  );
}

/** The card of a call waiting for approval; `onAnswer("once" | "always" | "deny")`. */
export function approvalCard(message, onAnswer, disabled) {
  const approval = message.approval;
  if (!approval) return null;
  const said = { once: "Allowed once", always: "Allowed for this conversation", deny: "Denied" }[approval.answer];
  const button = (choice, label, cls) =>
    el("button", { type: "button", class: cls, "data-testid": `approval-${choice}`, disabled, onclick: () => onAnswer(choice) }, label);
  return el(
    "div",
    { class: "approval-card", role: "group", "aria-label": "Tool approval", "data-testid": "approval-card" },
    el("div", { class: "approval-title" }, icon("alert"), `Allow ${approval.server} · ${approval.name}?`),
    el("p", { class: "approval-text" }, "The assistant wants to run a tool that changes something. Check its arguments:"),
    el("pre", { class: "tool-json" }, pretty(approval.arguments)),
    said
      ? el("div", { class: "approval-answer", "data-testid": "approval-answer" }, said)
      : el(
          "div",
          { class: "approval-actions" },
          button("once", "Allow once", "primary-btn"),
          button("always", "Always in this conversation", "text-btn"),
          button("deny", "Deny", "text-btn danger"),
        ),
  );
}

/** The approval answer a choice sends (`remember`: the server allows the tool again unasked). */
export function approvalInput(approval, choice) {
  return [{ type: "mcp_approval_response", approval_request_id: approval.id, approve: choice !== "deny", remember: choice === "always" }];
}
