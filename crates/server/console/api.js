// The console's only way to the server: the public HTTP API, with the API
// key (when the server asks for one) kept in this tab's sessionStorage and
// sent as `Authorization: Bearer <key>`.

const KEY_STORAGE = "bmad2pf.api-key";

/** An error answer of the API: its status, code, message and details. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let keyPrompt = null;

/**
 * Asks for the key once, however many requests got a 401 at the same time.
 * Resolves when a key was entered; rejects when the dialog was dismissed.
 */
function askForKey(refused) {
  if (keyPrompt) return keyPrompt;
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const reason = document.getElementById("key-reason");
  reason.textContent = refused
    ? "The server refused this key. Enter the API key again (kept in this tab's session storage only)."
    : "This server needs an API key. It is kept in this tab's session storage only.";
  input.value = "";
  keyPrompt = new Promise((resolve, reject) => {
    const done = () => {
      form.removeEventListener("submit", submitted);
      dialog.removeEventListener("cancel", cancelled);
      keyPrompt = null;
    };
    const submitted = () => {
      done();
      sessionStorage.setItem(KEY_STORAGE, input.value.trim());
      resolve();
    };
    const cancelled = () => {
      done();
      reject(new ApiError(401, "unauthorized", "This server needs an API key; reload the page to enter it."));
    };
    form.addEventListener("submit", submitted);
    dialog.addEventListener("cancel", cancelled);
  });
  dialog.showModal();
  input.focus();
  return keyPrompt;
}

function authHeaders(extra = {}) {
  const headers = new Headers(extra);
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body?.error) {
      return new ApiError(response.status, body.error.code, body.error.message, body.error.details);
    }
  } catch {
    // Not the JSON error shape: fall through to the status line.
  }
  return new ApiError(response.status, "http_" + response.status, `${response.status} ${response.statusText}`);
}

/**
 * Sends a request, asking for the key and retrying on a 401; throws an
 * ApiError for any other non-2xx answer. `json` or `markdown` is the body.
 */
export async function request(method, path, { json, markdown, headers, signal } = {}) {
  for (;;) {
    const init = { method, headers: authHeaders(headers), signal };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers.set("Content-Type", "application/json");
    } else if (markdown !== undefined) {
      init.body = markdown;
      init.headers.set("Content-Type", "text/markdown; charset=utf-8");
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      await askForKey(init.headers.has("Authorization"));
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }
}

export async function getJson(path, options) {
  return (await request("GET", path, options)).json();
}

export async function getText(path, options) {
  return (await request("GET", path, options)).text();
}

export async function postJson(path, json) {
  return (await request("POST", path, { json })).json();
}

/** `/path?query` from an object, dropping empty values. */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(name, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** A path segment, percent-encoded. */
export const seg = encodeURIComponent;

/**
 * Follows a run's events (SPEC 8.6): stored ones first, then live, until
 * `done` or `error`. EventSource cannot send the key, so this reads the
 * stream with fetch and parses Server-Sent Events itself; after a dropped
 * connection it reconnects with `Last-Event-ID`, missing nothing.
 * Returns a function that stops following.
 */
export function followRun(runId, onEvent) {
  const abort = new AbortController();
  let lastId = null;
  let ended = false;
  (async () => {
    while (!ended && !abort.signal.aborted) {
      try {
        const headers = { Accept: "text/event-stream" };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const response = await request("GET", `/runs/${seg(runId)}/events`, { headers, signal: abort.signal });
        for await (const event of parseEvents(response.body)) {
          if (event.id !== null) lastId = event.id;
          if (event.type === "done" || event.type === "error") ended = true;
          onEvent(event);
        }
      } catch (error) {
        if (abort.signal.aborted) return;
        if (error instanceof ApiError && error.status < 500) {
          ended = true;
          onEvent({ type: "stream_error", id: null, data: { code: error.code, message: error.message } });
          return;
        }
      }
      if (!ended) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  return () => abort.abort();
}

/** Server-Sent Events from a byte stream: `{id, type, data}` with data parsed as JSON. */
async function* parseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = parseBlock(block);
      if (event) yield event;
    }
  }
}

function parseBlock(block) {
  let id = null;
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") id = value;
    else if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0) return null;
  const text = data.join("\n");
  try {
    return { id, type, data: JSON.parse(text) };
  } catch {
    return { id, type, data: text };
  }
}
